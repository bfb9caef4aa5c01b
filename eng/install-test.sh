#!/usr/bin/env bash
# eng/install-test.sh - proves the README's install path (a step of eng/test.sh; about a minute).
#
#   bash eng/install-test.sh [feed]     feed: a folder of .nupkg files (default artifacts/packages, which eng/pack.sh fills)
#
# Creates a fresh console app in a temporary folder outside the repository (with empty Directory.Build.props and
# Directory.Packages.props, so nothing of the repository's build reaches it), adds the packages from the feed exactly as the
# README's Install section says (`dotnet add package Outboxer.PostgreSql --prerelease --source <feed>`; their dependencies come
# from the normally configured sources), copies in the README's snippets (samples/Outboxer.Worker/OrderService.cs, verbatim) and
# eng/install-test/Program.cs, builds it with warnings as errors, and runs it against the real PostgreSQL and RabbitMQ
# (OUTBOXER_POSTGRES_URL and OUTBOXER_RABBITMQ_URL, as `eval "$(bash eng/servers.sh env)"` exports them).
#
# The app restores into a package folder of its own, so the packages under test are never mixed up with an older build of
# the same version in the machine's package cache; that cache is only a read-only fallback for the dependencies.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)

feed=$(realpath "${1:-artifacts/packages}")
version=$(dotnet msbuild src/Outboxer/Outboxer.csproj -getProperty:Version)
[ -f "$feed/Outboxer.PostgreSql.$version.nupkg" ] || { echo "[install] no Outboxer.PostgreSql.$version.nupkg in $feed: run bash eng/pack.sh first" >&2; exit 1; }

work=$(mktemp -d /tmp/outboxer-install-XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "[install] fresh app in $work, packages $version from $feed"

# Nothing of the repository, nor of any folder above the temporary one, takes part in the build.
echo '<Project />' > "$work/Directory.Build.props"
echo '<Project />' > "$work/Directory.Build.targets"
echo '<Project />' > "$work/Directory.Packages.props"
cache="${NUGET_PACKAGES:-$HOME/.nuget/packages}"
fallback=""
if [ -d "$cache" ] && ! ls "$cache" | grep -qi '^outboxer'; then
  fallback="<fallbackPackageFolders><add key=\"machine-cache\" value=\"$cache\" /></fallbackPackageFolders>"
fi
cat > "$work/nuget.config" <<XML
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <config><add key="globalPackagesFolder" value="$work/packages" /></config>
  $fallback
</configuration>
XML

cd "$work"
dotnet new console -o App --framework net10.0 --no-restore >/dev/null
cd App
# The README's Install section, from the local feed.
dotnet add package Outboxer.PostgreSql --prerelease --source "$feed"
dotnet add package Outboxer.RabbitMQ --prerelease --source "$feed"
dotnet add package Microsoft.Extensions.Hosting --version 10.0.0
grep -q "Include=\"Outboxer.PostgreSql\" Version=\"$version\"" App.csproj || { echo "[install] App.csproj does not reference Outboxer.PostgreSql $version" >&2; cat App.csproj >&2; exit 1; }

rm -f Program.cs
cp "$repo/samples/Outboxer.Worker/OrderService.cs" .
cp "$repo/eng/install-test/Program.cs" .
dotnet build -c Release -warnaserror -nologo -v quiet
dotnet run -c Release --no-build
