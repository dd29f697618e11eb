#!/bin/sh
# Installs the acsrs ACS (crates.io, GPL-3.0; run as a test peer, never
# linked or shipped) into a cache outside the checkout, so a fresh clone on
# the same machine skips the ~4 minute build. Prints the binary's path.
set -eu

version="0.5.2"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/dmagent/acsrs-$version"
if [ ! -x "$cache/bin/acsrs" ]; then
    echo "install-acsrs: building acsrs $version into $cache (once per machine)" >&2
    cargo install --quiet --locked acsrs --version "$version" --root "$cache" >&2
fi
echo "$cache/bin/acsrs"
