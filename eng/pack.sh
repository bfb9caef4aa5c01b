#!/usr/bin/env bash
# eng/pack.sh - packs every package under src/ into artifacts/packages/ and checks what is in them.
#
#   bash eng/pack.sh              builds (Release) and packs
#   bash eng/pack.sh --no-build   packs what a Release build already made (eng/test.sh does this after its build)
#
# Extra arguments go to `dotnet pack` (for example -p:RepositoryUrl=...). Fails when a check fails:
#   - every project under src/ gives a .nupkg and a .snupkg (symbols, with the sources embedded in the PDBs);
#   - every package carries the MIT license expression, the LICENSE file and the icon;
#   - a package that depends on a sibling (Outboxer.*) names its exact version, [x.y.z];
#   - no dependency on Microsoft.Extensions.* or Microsoft.Data.Sqlite is above the 10.0 line (the net10.0 floor);
#   - the CLI tool package is under 10 MB;
#   - with CI=true (a deterministic build), no DLL embeds the absolute path of this checkout.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out=artifacts/packages
rm -rf "$out"
mkdir -p "$out"

# The tool package is made from the CLI's publish folder, which publish only adds to, keeping a file newer than the one it
# would copy: after a dependency moves to a lower version the old files would stay and be packed. Start it empty.
rm -rf src/*/bin/Release/*/publish

echo "[pack] packing into $out"
# The solution, so one command packs every package; its projects that are not packages are skipped.
dotnet pack Outboxer.slnx -c Release -warnaserror -nologo -v minimal -o "$out" "$@"

version=$(dotnet msbuild src/Outboxer/Outboxer.csproj -getProperty:Version)
cli_limit=$((10 * 1000 * 1000))
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
problems=0
fail() { echo "[pack] FAIL: $*" >&2; problems=$((problems + 1)); }

for csproj in src/*/*.csproj; do
  id=$(basename "$csproj" .csproj)
  nupkg="$out/$id.$version.nupkg"
  snupkg="$out/$id.$version.snupkg"
  [ -f "$nupkg" ] || { fail "$id: no $nupkg"; continue; }
  [ -f "$snupkg" ] || fail "$id: no symbols package $snupkg"
  # Listings go into variables first: `unzip | grep -q` fails under pipefail when grep stops reading early.
  symbols=$(unzip -l "$snupkg" 2>/dev/null || true)
  grep -q '\.pdb$' <<<"$symbols" || fail "$id: the symbols package has no .pdb"

  nuspec=$(unzip -p "$nupkg" "$id.nuspec")
  grep -q '<license type="expression">MIT</license>' <<<"$nuspec" || fail "$id: no MIT license expression in the nuspec"
  files=$(unzip -l "$nupkg")
  grep -q ' LICENSE$' <<<"$files" || fail "$id: no LICENSE file in the package"
  grep -q '<icon>icon.png</icon>' <<<"$nuspec" && grep -q ' icon.png$' <<<"$files" || fail "$id: no icon"
  grep -q '<repository type="git"[^>]* commit="[0-9a-f]\{40\}"' <<<"$nuspec" || fail "$id: no repository commit in the nuspec"

  while read -r dep; do
    dep_id=$(sed -n 's/.*id="\([^"]*\)".*/\1/p' <<<"$dep")
    dep_version=$(sed -n 's/.*version="\([^"]*\)".*/\1/p' <<<"$dep")
    case "$dep_id" in
      Outboxer*) [ "$dep_version" = "[$version]" ] || fail "$id: depends on $dep_id $dep_version, not exactly [$version]" ;;
      Microsoft.Extensions.*|Microsoft.Data.Sqlite*)
        [[ "$dep_version" == 10.* ]] || fail "$id: depends on $dep_id $dep_version, above the net10.0 floor (10.0.x)" ;;
    esac
  done < <(grep -o '<dependency [^>]*>' <<<"$nuspec" || true)

  size=$(stat -c %s "$nupkg")
  printf '[pack] %-40s %9s bytes  (symbols %s bytes)\n' "$id" "$size" "$(stat -c %s "$snupkg" 2>/dev/null || echo -)"
  if [ "$id" = Outboxer.Cli ] && [ "$size" -ge "$cli_limit" ]; then
    fail "$id: the tool package is $size bytes, the limit is $cli_limit"
  fi

  if [ "${CI:-}" = true ]; then
    rm -rf "$work/$id" && mkdir -p "$work/$id" && unzip -q "$nupkg" '*.dll' -d "$work/$id" 2>/dev/null || true
    while IFS= read -r dll; do
      case "$dll" in */Outboxer*.dll) ;; *) continue ;; esac
      if grep -qaF "$PWD/" "$dll"; then fail "$id: $(basename "$dll") embeds the absolute path $PWD/ (not a deterministic build)"; fi
    done < <(find "$work/$id" -name '*.dll')
  fi
done

if [ "$problems" -gt 0 ]; then
  echo "[pack] $problems problem(s)" >&2
  exit 1
fi
echo "[pack] all packages checked"
