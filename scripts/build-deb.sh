#!/bin/sh
# Builds the Debian package of this checkout into target/debian/
# (dmagent_VERSION_ARCH.deb), from a staging tree laid out here and
# dpkg-deb: no debian/ directory and no debhelper, so it builds anywhere
# dpkg does (the tests install it into a throw-away root).
#
#   /usr/bin/dmagent, /usr/bin/dmagent-launch
#   /etc/dmagent.toml (a conffile: the embedded default, every key shown)
#   /usr/lib/systemd/system/dmagent.service (the agent under its launcher)
#   /usr/lib/sysusers.d/dmagent.conf, /usr/lib/tmpfiles.d/dmagent.conf
#   /usr/share/dbus-1/system.d/org.dmagent.Agent1.conf (the bus policy)
#   /usr/share/man/man1/dmagent.1.gz and dmagent-VERB.1.gz
#   bash and zsh completions, /usr/share/doc/dmagent/ (copyright, README,
#   examples/programs.conf: the sandbox drop-in for the configured programs)
set -eu
cd "$(dirname "$0")/.."
# What dpkg-deb wants of the tree's modes, whatever the caller's umask.
umask 022

for tool in dpkg-deb dpkg objdump gzip; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "build-deb: $tool is missing (Debian's dpkg, binutils, gzip)" >&2
        exit 1
    }
done

cargo build --release --locked -p dmagent --bin dmagent
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
arch=$(dpkg --print-architecture)
out=target/debian
root=$out/root
rm -rf "$root" "$out/generated"
mkdir -p "$root/DEBIAN"

install -D -m 0755 target/release/dmagent "$root/usr/bin/dmagent"
strip --strip-unneeded "$root/usr/bin/dmagent"
install -D -m 0755 scripts/dmagent-launch "$root/usr/bin/dmagent-launch"
# 0600: it is where connection-request passwords and PSKs are written.
install -D -m 0600 agent/dmagent.default.toml "$root/etc/dmagent.toml"
install -D -m 0644 dist/dmagent.service "$root/usr/lib/systemd/system/dmagent.service"
install -D -m 0644 dist/dmagent.sysusers "$root/usr/lib/sysusers.d/dmagent.conf"
install -D -m 0644 dist/dmagent.tmpfiles "$root/usr/lib/tmpfiles.d/dmagent.conf"
install -D -m 0644 dist/org.dmagent.Agent1.conf \
    "$root/usr/share/dbus-1/system.d/org.dmagent.Agent1.conf"

# The man pages and completions, from the agent's clap definition.
cargo xtask dist "$out/generated"
mkdir -p "$root/usr/share/man/man1"
for page in "$out"/generated/*.1; do
    gzip -9 -n -c "$page" > "$root/usr/share/man/man1/$(basename "$page").gz"
done
install -D -m 0644 "$out/generated/dmagent.bash" \
    "$root/usr/share/bash-completion/completions/dmagent"
install -D -m 0644 "$out/generated/_dmagent" \
    "$root/usr/share/zsh/vendor-completions/_dmagent"

doc=$root/usr/share/doc/dmagent
install -D -m 0644 README.md "$doc/README.md"
install -D -m 0644 dist/programs.conf "$doc/examples/programs.conf"
{
    echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
    echo "Upstream-Name: dmagent"
    echo
    echo "Files: *"
    echo "License: Apache-2.0"
    echo
    echo "License: Apache-2.0"
    sed 's/^$/./; s/^/ /' LICENSE
} > "$doc/copyright"
chmod 0644 "$doc/copyright"

# The newest glibc symbol version the binary needs.
glibc=$(objdump -T "$root/usr/bin/dmagent" | sed -n 's/.*GLIBC_\([0-9.]*\).*/\1/p' | sort -V | tail -n 1)
# Packed relative relocations (agent/build.rs) need glibc 2.36's loader:
# a version reference with no symbol, so objdump -T does not show it.
if objdump -p "$root/usr/bin/dmagent" | grep -q GLIBC_ABI_DT_RELR; then
    glibc=$(printf '%s\n2.36\n' "$glibc" | sort -V | tail -n 1)
fi
cat > "$root/DEBIAN/control" <<CONTROL
Package: dmagent
Version: $version
Architecture: $arch
Maintainer: dmagent developers <dmagent@localhost>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: libc6 (>= $glibc)
Recommends: dbus
Suggests: network-manager, ofono
Section: net
Priority: optional
Description: TR-069/CWMP and LwM2M device management agent
 One agent that manages a Linux device (gateway, router, IoT box) from the
 network over TR-069/CWMP and OMA LwM2M at once, on one object tree: a
 change made through one protocol is reported through the other.
CONTROL
echo /etc/dmagent.toml > "$root/DEBIAN/conffiles"
cat > "$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
# The dmagent group and the state directory; the unit is not enabled:
# edit /etc/dmagent.toml, then systemctl enable --now dmagent.
set -e
if [ "$1" = configure ]; then
    command -v systemd-sysusers >/dev/null && systemd-sysusers dmagent.conf
    command -v systemd-tmpfiles >/dev/null && systemd-tmpfiles --create dmagent.conf
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
        systemctl reload dbus 2>/dev/null || true
        # An upgrade: a running agent is restarted on the new binary.
        if [ -n "${2:-}" ]; then systemctl try-restart dmagent.service || true; fi
    fi
fi
exit 0
POSTINST
cat > "$root/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl disable --now dmagent.service 2>/dev/null || true
fi
exit 0
PRERM
cat > "$root/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
exit 0
POSTRM
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

deb=$out/dmagent_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
