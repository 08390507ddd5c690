# dms .rpm %preun ($1 = 0: removal, 1: upgrade). Only on removal is dms-server stopped and
# disabled; KillMode=process: its FUSE helpers and mounts stay up.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now dms-server.service >/dev/null 2>&1 || :
fi
:
