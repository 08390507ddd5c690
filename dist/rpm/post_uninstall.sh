# dms .rpm %postun: daemon-reload where systemd runs. /var/lib/dms (the journal) stays.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload || :
fi
:
