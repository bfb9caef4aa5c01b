#!/usr/bin/env bash
# eng/public-api.sh - record a change to the public API of the library packages in their PublicAPI.Unshipped.txt.
#
# Usage:
#   bash eng/public-api.sh                          every library under src/ (not the CLI tool, an executable)
#   bash eng/public-api.sh src/Outboxer.MySql ...   only these project folders (what they reference is built too)
#
# Run it after changing public API, then review the diff it prints and commit it with the code.
#
# The build fails on any public change without its line (Microsoft.CodeAnalysis.PublicApiAnalyzers; the rules are
# errors in eng/PublicAPI.globalconfig). This script builds the libraries (Debug), reads those errors and writes them
# down the way the analyzer's own code fix and documentation do:
#   RS0016  a public type or member has no line      -> its line (with nullability) is added to PublicAPI.Unshipped.txt
#   RS0017  a declared type or member is gone or no longer public:
#             its line is in PublicAPI.Shipped.txt   -> `*REMOVED*` + that exact line is added to PublicAPI.Unshipped.txt
#             its line is in PublicAPI.Unshipped.txt -> the line is deleted (it never shipped)
#   RS0050  a `*REMOVED*` symbol is public again     -> the `*REMOVED*` line is deleted
# A removed type gives one RS0017 per line (the type, its constructors, its public and protected members), so each
# line gets its own `*REMOVED*` line; so does an override that goes away in a derived class of another package.
# A changed signature is a removal plus an addition. Each Unshipped file stays sorted (ordinal, ignoring case, as the
# code fix sorts) under its `#nullable enable` first line. A library without its two files gets them.
# Then it builds again until there is nothing left to record (normally one more, quicker, round).
#
# What it does not decide for you, and prints instead (exit 1): the other API errors, which are design questions,
# not bookkeeping (RS0026/RS0027 overloads with optional parameters, RS0036/RS0041 nullability, RS0022, RS0024,
# RS0025), and any other build error (a public member without XML docs fails the build too).
#
# PublicAPI.Shipped.txt is never written here. When a version is released, its Unshipped lines move into Shipped
# (a `*REMOVED*` line deletes its entry from Shipped instead) and Unshipped goes back to `#nullable enable` alone.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The parsing below reads the analyzer's English messages.
export DOTNET_CLI_UI_LANGUAGE=en DOTNET_NOLOGO=1

die() { echo "[public-api] $*" >&2; exit 2; }

# The libraries: every project folder under src/ (or the given ones) whose project is not an executable.
# The core goes first: every other library references it.
dirs=()
if (($#)); then
  for d in "$@"; do dirs+=("${d%/}"); done
else
  [ -d src/Outboxer ] && dirs+=(src/Outboxer)
  for d in src/*/; do
    d=${d%/}
    [ "$d" = src/Outboxer ] || dirs+=("$d")
  done
fi
projects=()
for d in "${dirs[@]}"; do
  csproj=$(find "$d" -maxdepth 1 -name '*.csproj' | head -n 1)
  [ -n "$csproj" ] || die "$d: no project file"
  if grep -q '<OutputType>Exe</OutputType>' "$csproj"; then
    (($#)) && die "$d is an executable: its public API is not tracked"
    continue
  fi
  for f in PublicAPI.Shipped.txt PublicAPI.Unshipped.txt; do
    if [ ! -f "$d/$f" ]; then
      echo "[public-api] $d: creating $f"
      printf '#nullable enable\n' >"$d/$f"
    fi
  done
  projects+=("$csproj")
done
((${#projects[@]})) || die "no library project to check"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
touched="$work/touched"
: >"$touched"

# Rewrite an Unshipped file: `#nullable enable`, then its lines sorted as the code fix sorts them (OrdinalIgnoreCase,
# then ordinal; `sort -f` in the C locale), without blank or duplicate lines.
normalize() {
  local file=$1
  { printf '#nullable enable\n'
    tr -d '\r' <"$file" | grep -vx -e '#nullable enable' -e '' | LC_ALL=C sort -f | uniq || true
  } >"$work/sorted"
  cat "$work/sorted" >"$file"
}

add_line() {     # add_line FILE LINE: false if it is there already
  grep -qxF -e "$2" "$1" && return 1
  printf '\n%s\n' "$2" >>"$1"
  echo "$1" >>"$touched"
}

delete_line() {  # delete_line FILE LINE: false if it is not there
  grep -qxF -e "$2" "$1" || return 1
  grep -vxF -e "$2" "$1" >"$work/kept" || true
  cat "$work/kept" >"$1"
  echo "$1" >>"$touched"
}

# One build of all the libraries per round, through a throwaway solution that lists only them: each project compiles
# once (a failing core is not compiled again for every package that references it), in parallel where it can.
{ echo '<Solution>'
  for csproj in "${projects[@]}"; do
    [[ $csproj == /* ]] || csproj=$PWD/$csproj
    printf '  <Project Path="%s" />\n' "$csproj"
  done
  echo '</Solution>'
} >"$work/libraries.slnx"
build() {  # into $work/log; the exit code is the build's
  dotnet build "$work/libraries.slnx" -nologo -v minimal -tl:off -clp:NoSummary -p:PreferredUILang=en-US >"$work/log" 2>&1
}

# Record what the last build's log says; prints what changed, per file, and sets changed=1 if anything did.
record() {
  local kind file line proj text dir
  local -a ops=()
  local -A added=() removed=() deleted=()
  # "KIND<TAB>FILE<TAB>LINE<TAB>PROJECT<TAB>MESSAGE", once each. MSBuild appends the project that reported the error;
  # it is the project whose API files are concerned (a reference's errors carry the reference's project).
  while IFS=$'\t' read -r kind file line proj text; do
    case $kind in
      RS0016)
        # The message quotes the exact API line: Symbol '<line>' is not part of the declared public API
        text=$(printf '%s' "$text" | sed -E "s/^Symbol '(.*)' is not part of the declared public API.*$/\1/")
        ops+=("add"$'\t'"$(dirname "$proj")/PublicAPI.Unshipped.txt"$'\t'"$text")
        ;;
      RS0017 | RS0050)
        # The error points at the line of the API file: read it from there, exactly as written.
        text=$(sed -n "${line}p" "$file" | tr -d '\r')
        [ -n "$text" ] || die "cannot read line $line of $file"
        dir=$(dirname "$file")
        case "$kind:$(basename "$file")" in
          RS0017:PublicAPI.Shipped.txt) ops+=("add"$'\t'"$dir/PublicAPI.Unshipped.txt"$'\t'"*REMOVED*$text") ;;
          RS0017:PublicAPI.Unshipped.txt | RS0050:PublicAPI.Unshipped.txt) ops+=("delete"$'\t'"$file"$'\t'"$text") ;;
          *) die "unexpected $kind location: $file($line)" ;;
        esac
        ;;
    esac
  done < <(sed -nE 's/^(.+)\(([0-9]+),[0-9]+\): error (RS0016|RS0017|RS0050): (.*) \[([^]]+\.csproj)[^]]*\]$/\3\t\1\t\2\t\5\t\4/p' "$work/log" | sort -u)

  # Apply only after every line was read, so that line numbers still match the files.
  local op
  for op in "${ops[@]}"; do
    IFS=$'\t' read -r kind file text <<<"$op"
    case $kind in
      add)
        add_line "$file" "$text" || continue
        if [[ $text == '*REMOVED*'* ]]; then
          removed[$file]=$((${removed[$file]:-0} + 1))
        else
          added[$file]=$((${added[$file]:-0} + 1))
        fi
        ;;
      delete)
        delete_line "$file" "$text" || continue
        deleted[$file]=$((${deleted[$file]:-0} + 1))
        ;;
    esac
  done
  while read -r file; do
    changed=1
    echo "[public-api] ${file#"$PWD"/}: ${added[$file]:-0} added, ${removed[$file]:-0} marked *REMOVED*," \
      "${deleted[$file]:-0} unshipped line(s) deleted"
  done < <(printf '%s\n' "${!added[@]}" "${!removed[@]}" "${!deleted[@]}" | grep -v '^$' | sort -u)
}

changed=1
round=0
while ((changed)) && ((round < 5)); do
  round=$((round + 1))
  changed=0
  : >"$work/failed"
  echo "[public-api] round $round: building ${#projects[@]} libraries"
  if build; then status=0; else status=1; fi
  record
  # A round that records nothing is the last: its errors are what is left for the developer.
  if ((status)); then
    grep -F ': error ' "$work/log" >"$work/failed" || tail -n 20 "$work/log" >"$work/failed"
  fi
  while read -r f; do normalize "$f"; done < <(sort -u "$touched")
  : >"$touched"
done

status=0
if ((changed)); then
  echo "[public-api] still changing after $round rounds: run it again" >&2
  status=1
elif [ -s "$work/failed" ]; then
  echo "[public-api] the build still fails; these need a decision in the code, not a line in a file:" >&2
  sed -E 's/ \(https?:[^)]*\)//' "$work/failed" | sort -u >&2
  status=1
else
  echo "[public-api] every library builds: its public API is recorded"
fi

echo "[public-api] changes to the API files (review them, then commit them with the code):"
git --no-pager diff --stat -- '*PublicAPI.Shipped.txt' '*PublicAPI.Unshipped.txt'
git --no-pager status --short -- '*PublicAPI.Shipped.txt' '*PublicAPI.Unshipped.txt' | grep '^??' || true
echo "[public-api] review: git diff -- '*PublicAPI.Unshipped.txt'"
exit "$status"
