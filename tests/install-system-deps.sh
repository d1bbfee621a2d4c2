#!/bin/sh
# Install the system packages the test suite needs: OpenLDAP's slapd and ldap-utils.
# tests/test_ldap.py runs its own slapd as a user process on a free port (tests/ldap_server.py);
# it never uses a system slapd. CI runs this, then the tests with MODELGATE_REQUIRE_SLAPD=1.
#
# Idempotent: when every binary is already there it changes nothing. Safe on a fresh Debian 12
# machine or container, as root or through sudo:
#   - debconf is preseeded with slapd/no_configuration, so the package creates no database and no
#     cn=config of its own (the tests bring their own config);
#   - a temporary policy-rc.d (exit 101) forbids the postinst to start a system slapd, which would
#     fail in a container without an init system and would hold port 389 on a CI runner;
#     an existing policy-rc.d is left untouched, and ours is removed on exit;
#   - where the slapd package ships an enforced AppArmor profile (Ubuntu does; Debian 12 does not),
#     slapd is confined to /etc/ldap, /var/lib/ldap and a few runtime paths, which would deny the
#     tests' config and database under the temp dir: that profile is disabled the documented way
#     (a link in /etc/apparmor.d/disable, then apparmor_parser -R).
set -eu

say() { printf 'install-system-deps: %s\n' "$*"; }

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    SUDO=""
fi

# the binaries the tests use, and the package that ships each
need=""
[ -x /usr/sbin/slapd ] || need="$need slapd"
command -v ldapsearch >/dev/null 2>&1 || need="$need ldap-utils"

if [ -z "$need" ]; then
    say "slapd and ldap-utils already installed, nothing to install"
else
    if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
        say "missing:$need; run as root or install sudo" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive

    say "preseeding debconf: slapd/no_configuration=true (no system database)"
    echo "slapd slapd/no_configuration boolean true" | $SUDO debconf-set-selections

    created_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        say "installing a temporary /usr/sbin/policy-rc.d so the package starts no service"
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    else
        say "/usr/sbin/policy-rc.d exists, leaving it as it is"
    fi
    cleanup() {
        if [ -n "$created_policy" ]; then
            say "removing the temporary /usr/sbin/policy-rc.d"
            $SUDO rm -f /usr/sbin/policy-rc.d
        fi
    }
    trap cleanup EXIT
    trap 'exit 130' INT TERM

    say "apt-get update"
    $SUDO apt-get update -qq
    say "apt-get install:$need"
    # shellcheck disable=SC2086  # $need is a word list on purpose
    $SUDO apt-get install -y -qq --no-install-recommends $need

    # the package may have left a stopped (or, without policy-rc.d, running) system slapd behind;
    # stop it if something did start it, but never fail the install over it
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        if systemctl is-active --quiet slapd 2>/dev/null; then
            say "stopping and disabling the system slapd service"
            $SUDO systemctl disable --now slapd >/dev/null 2>&1 || true
        fi
    fi
fi

profile=/etc/apparmor.d/usr.sbin.slapd
if [ -f "$profile" ] && [ -r /sys/module/apparmor/parameters/enabled ] \
    && [ "$(cat /sys/module/apparmor/parameters/enabled)" = "Y" ] \
    && $SUDO grep -q '^/usr/sbin/slapd (enforce)' \
        /sys/kernel/security/apparmor/profiles 2>/dev/null; then
    say "disabling the AppArmor profile for slapd (tests run it from a temp dir)"
    $SUDO mkdir -p /etc/apparmor.d/disable
    $SUDO ln -sf "$profile" /etc/apparmor.d/disable/
    $SUDO apparmor_parser -R "$profile" || say "apparmor_parser -R failed: slapd may stay confined"
fi

say "slapd: $(/usr/sbin/slapd -VV 2>&1 | head -n 1)"
say "ldapsearch: $(command -v ldapsearch)"
