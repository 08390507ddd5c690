//! What `dms-journal` prints for the standard fixture, verbatim.

pub const OVERVIEW: &str = "\
TARGET    STATE                                                        KIND  MOUNT PATH                                   HELPER  LAST EVENT  UPDATED
nfs-beta  mounted                                                      nfs   /var/lib/trilio/triliovault-mounts/nfs-beta  -       Verified    2026-01-01T00:01:41.000Z
s3-alpha  mounted                                                      s3    /var/lib/trilio/triliovault-mounts/s3-alpha  4242    Answered    2026-01-01T00:01:00.000Z
s3-delta  unmounted                                                    s3    /var/lib/trilio/triliovault-mounts/s3-delta  -       Unmounted   2026-01-01T00:06:42.000Z
s3-dirty  dirty (stop helper pid 4444, detach mount, remove PID file)  s3    /var/lib/trilio/triliovault-mounts/s3-dirty  4444    Failed      2026-01-01T00:08:52.000Z
s3-gamma  unmounted                                                    s3    /var/lib/trilio/triliovault-mounts/s3-gamma  -       Failed      2026-01-01T00:03:21.000Z
5 targets: 2 mounted, 2 unmounted, 0 in flight, 1 dirty; 20 records; no problems
";

pub const SUMMARY: &str =
    "5 targets: 2 mounted, 2 unmounted, 0 in flight, 1 dirty; 20 records; no problems\n";

pub const ALPHA: &str = "\
target s3-alpha: 5 records in the journal
SEQ  AT                        BOOT      EVENT         REQUEST      OP        DETAILS
1    2026-01-01T00:00:00.000Z  3f1b2c4d  Requested     req-alpha-1  a0000001  s3 at /var/lib/trilio/triliovault-mounts/s3-alpha (secret_ref https://barbican:9311/v1/secrets/s3-alpha-secret)
2    2026-01-01T00:00:01.000Z  3f1b2c4d  CredsFetched  req-alpha-1  a0000001
3    2026-01-01T00:00:02.000Z  3f1b2c4d  Spawned       req-alpha-1  a0000001  pid 4242 (start 5242 ticks, boot 3f1b2c4d-1111-4222-8333-944455556666)
4    2026-01-01T00:00:03.000Z  3f1b2c4d  Verified      req-alpha-1  a0000001
5    2026-01-01T00:01:00.000Z  3f1b2c4d  Answered      req-alpha-2  a0000002  already mounted at /var/lib/trilio/triliovault-mounts/s3-alpha

current state:
  state       mounted
  kind        s3
  mount path  /var/lib/trilio/triliovault-mounts/s3-alpha
  helper      pid 4242 (start 5242 ticks, boot 3f1b2c4d-1111-4222-8333-944455556666)
  operation   none
  updated     2026-01-01T00:01:00.000Z
  records     5
  requests    2 answered
    REQUEST      ANSWERED                  OUTCOME
    req-alpha-1  2026-01-01T00:00:03.000Z  s3 mounted at /var/lib/trilio/triliovault-mounts/s3-alpha
    req-alpha-2  2026-01-01T00:01:00.000Z  already mounted at /var/lib/trilio/triliovault-mounts/s3-alpha
";

pub const GAMMA: &str = "\
target s3-gamma: 2 records in the journal
SEQ  AT                        BOOT      EVENT      REQUEST      OP        DETAILS
8    2026-01-01T00:03:20.000Z  3f1b2c4d  Requested  req-gamma-1  a0000004  s3 at /var/lib/trilio/triliovault-mounts/s3-gamma (secret_ref https://barbican:9311/v1/secrets/s3-gamma-secret)
9    2026-01-01T00:03:21.000Z  3f1b2c4d  Failed     req-gamma-1  a0000004  final: Failed to fetch credentials: Barbican returned 403 Forbidden

current state:
  state       unmounted
  kind        s3
  mount path  /var/lib/trilio/triliovault-mounts/s3-gamma
  helper      -
  operation   none
  updated     2026-01-01T00:03:21.000Z
  records     2
  requests    1 answered
    REQUEST      ANSWERED                  OUTCOME
    req-gamma-1  2026-01-01T00:03:21.000Z  failed: Failed to fetch credentials: Barbican returned 403 Forbidden
";

pub const DELTA: &str = "\
target s3-delta: 7 records in the journal
SEQ  AT                        BOOT      EVENT             REQUEST      OP        DETAILS
10   2026-01-01T00:05:00.000Z  3f1b2c4d  Requested         req-delta-1  a0000005  s3 at /var/lib/trilio/triliovault-mounts/s3-delta (secret_ref https://barbican:9311/v1/secrets/s3-delta-secret)
11   2026-01-01T00:05:01.000Z  3f1b2c4d  CredsFetched      req-delta-1  a0000005
12   2026-01-01T00:05:02.000Z  3f1b2c4d  Spawned           req-delta-1  a0000005  pid 4343 (start 5343 ticks, boot 3f1b2c4d-1111-4222-8333-944455556666)
13   2026-01-01T00:05:03.000Z  3f1b2c4d  Verified          req-delta-1  a0000005
14   2026-01-01T00:06:40.000Z  3f1b2c4d  UnmountRequested  req-delta-2  a0000006  from /var/lib/trilio/triliovault-mounts/s3-delta
15   2026-01-01T00:06:41.000Z  3f1b2c4d  HelperStopped     req-delta-2  a0000006
16   2026-01-01T00:06:42.000Z  3f1b2c4d  Unmounted         req-delta-2  a0000006

current state:
  state       unmounted
  kind        s3
  mount path  /var/lib/trilio/triliovault-mounts/s3-delta
  helper      -
  operation   none
  updated     2026-01-01T00:06:42.000Z
  records     7
  requests    2 answered
    REQUEST      ANSWERED                  OUTCOME
    req-delta-1  2026-01-01T00:05:03.000Z  s3 mounted at /var/lib/trilio/triliovault-mounts/s3-delta
    req-delta-2  2026-01-01T00:06:42.000Z  unmounted from /var/lib/trilio/triliovault-mounts/s3-delta
";

/// s3-delta after compacting everything older than T0 + 350 s.
pub const DELTA_COMPACTED: &str = "\
target s3-delta: 3 records in the journal
4 earlier records compacted into a snapshot at seq 13
SEQ  AT                        BOOT      EVENT             REQUEST      OP        DETAILS
14   2026-01-01T00:06:40.000Z  3f1b2c4d  UnmountRequested  req-delta-2  a0000006  from /var/lib/trilio/triliovault-mounts/s3-delta
15   2026-01-01T00:06:41.000Z  3f1b2c4d  HelperStopped     req-delta-2  a0000006
16   2026-01-01T00:06:42.000Z  3f1b2c4d  Unmounted         req-delta-2  a0000006

current state:
  state       unmounted
  kind        s3
  mount path  /var/lib/trilio/triliovault-mounts/s3-delta
  helper      -
  operation   none
  updated     2026-01-01T00:06:42.000Z
  records     7
  requests    1 answered
    REQUEST      ANSWERED                  OUTCOME
    req-delta-2  2026-01-01T00:06:42.000Z  unmounted from /var/lib/trilio/triliovault-mounts/s3-delta
";

pub const REQUEST_GAMMA: &str = "\
request req-gamma-1
  target   s3-gamma
  outcome  failed: Failed to fetch credentials: Barbican returned 403 Forbidden (answered 2026-01-01T00:03:21.000Z)
SEQ  AT                        BOOT      EVENT      REQUEST      OP        DETAILS
8    2026-01-01T00:03:20.000Z  3f1b2c4d  Requested  req-gamma-1  a0000004  s3 at /var/lib/trilio/triliovault-mounts/s3-gamma (secret_ref https://barbican:9311/v1/secrets/s3-gamma-secret)
9    2026-01-01T00:03:21.000Z  3f1b2c4d  Failed     req-gamma-1  a0000004  final: Failed to fetch credentials: Barbican returned 403 Forbidden
";

pub const REQUEST_ALPHA_2: &str = "\
request req-alpha-2
  target   s3-alpha
  outcome  already mounted at /var/lib/trilio/triliovault-mounts/s3-alpha (answered 2026-01-01T00:01:00.000Z)
SEQ  AT                        BOOT      EVENT     REQUEST      OP        DETAILS
5    2026-01-01T00:01:00.000Z  3f1b2c4d  Answered  req-alpha-2  a0000002  already mounted at /var/lib/trilio/triliovault-mounts/s3-alpha
";
