# Ready time of `appliance serve` on a data dir: spawn until D/control.sock exists (serve binds
# it only after the scheduler has loaded every job), then SIGTERM. Rounds alternate binaries.
import os, subprocess, sys, time, statistics
# Usage: ready_two_dirs.py ROUNDS AFTER_BIN AFTER_DIR BEFORE_BIN BEFORE_DIR (each binary on its
# own copy of the data: a summary format change makes a shared dir rebuild at every start).
# Only loopback is listened on; nothing is sent anywhere.
pairs = [("after", sys.argv[2], sys.argv[3]), ("before", sys.argv[4], sys.argv[5])]
def once(binary, d):
    sock = os.path.join(d, "control.sock")
    if os.path.exists(sock): os.remove(sock)
    t = time.monotonic()
    p = subprocess.Popen([binary, "--data-dir", d, "serve", "--listen", "127.0.0.1:0"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=dict(os.environ, RUST_LOG="warn"))
    while not os.path.exists(sock):
        if p.poll() is not None: sys.exit(f"{binary} exited {p.returncode}")
        time.sleep(0.001)
    ms = (time.monotonic() - t) * 1e3
    p.terminate(); p.wait(timeout=60)
    return ms
for name, b, d in pairs: once(b, d)  # warm-up: each converts its own copy once
res = {n: [] for n, _, _ in pairs}
rounds = int(sys.argv[1])
for _ in range(rounds):
    for name, b, d in pairs:
        res[name].append(once(b, d))
print("load", open("/proc/loadavg").read().split()[:3])
for n in res: print(n, [round(x) for x in res[n]], "median", round(statistics.median(res[n])))
print("per-round ratio after/before", [round(a/b, 2) for a, b in zip(res["after"], res["before"])],
      "median ratio", round(statistics.median(res["after"]) / statistics.median(res["before"]), 2))
