# dms .rpm %post (install: $1 = 1, upgrade: $1 = 2). As the .deb's postinst: directories,
# daemon-reload where systemd runs; dms-server is never started, stopped or restarted.
install -d -m 0755 /run/dms /run/dms/s3
install -d -m 0700 /var/lib/dms
install -d -m 0750 /var/log/dms /var/log/dms/helpers
[ -d /var/lib/trilio/triliovault-mounts ] || install -d -m 0755 /var/lib/trilio/triliovault-mounts
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload || :
    if [ "$1" -gt 1 ] && systemctl is-active --quiet dms-server; then
        echo "dms-server is running the old binary: systemctl restart dms-server (mounts and helpers stay up)."
    fi
fi
:
