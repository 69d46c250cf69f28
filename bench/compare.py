#!/usr/bin/env python3
"""Proxy binaries side by side: each case measured straight to the fast upstream, then through
every proxy in turn, in one run, so the binaries see the same machine (see BENCHMARKS.md).

Usage: bench/compare.py NAME=BINARY [NAME=BINARY ...] [--duration S] [--rounds N]
                        [--cases h1:1,h1:64,h2:1,h2:64]

For each case: req/s, p50 and p99 (added and as a ratio to direct), CPU time per request split
into user and system time, the CPU ratio to the upstream, and context switches per request (all
of the proxy's threads, from /proc). Builds the fast upstream (examples/bench_upstream.rs) in
release mode; the proxies are the binaries given, e.g. a copy of target/release/kube-oidc-proxy
saved before a change.
"""
import argparse
import importlib.util
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run)


def context_switches(pid):
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if "ctxt_switches" in line:
                total += int(line.split()[1])
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("proxies", nargs="+", help="NAME=BINARY")
    parser.add_argument("--duration", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--cases", default="h1:1,h1:64,h2:1,h2:64")
    args = parser.parse_args()
    cases = [(proto, int(conns)) for proto, conns in (c.split(":") for c in args.cases.split(","))]
    run.ensure_tools()
    target = run.REPO / "target"
    run.subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "bench_upstream"], cwd=run.REPO, check=True)
    work = Path(tempfile.mkdtemp(prefix="kube-oidc-proxy-compare-"))
    upstream = run.Proc([str(target / "release/examples/bench_upstream"), str(work)], read_stdout=True)
    port = int(upstream.p.stdout.readline().split()[1])
    issuer = {"url": f"https://127.0.0.1:{port}", "client_id": "kube", "ca": f"{work}/ca.crt"}
    auth = [f"authorization: Bearer {(work / 'token').read_text().strip()}"]
    proxies = []
    try:
        for spec_ in args.proxies:
            name, binary = spec_.split("=", 1)
            proc, proxy_port = run.start_proxy(binary, work, issuer, [f"--server=https://127.0.0.1:{port}",
                                                                      f"--certificate-authority={work}/ca.crt", "--token=bench"])
            proxies.append((name, proc, proxy_port))
        for _ in range(args.rounds):
            for proto, conns in cases:
                before = run.cpu_split(upstream.pid)
                direct = run.h2load(f"https://127.0.0.1:{port}{run.NAMESPACE_PATH}", conns, proto, args.duration, auth)
                upstream_us = 1e6 * (sum(run.cpu_split(upstream.pid)) - sum(before)) / direct["n"]
                print(f"{proto} c={conns} direct: {direct['rps']:.0f} req/s, p50 {direct['p50']:.3f} ms, "
                      f"p99 {direct['p99']:.3f} ms, upstream CPU {upstream_us:.1f} us/req", flush=True)
                for name, proc, proxy_port in proxies:
                    cpu0, cs0 = run.cpu_split(proc.pid), context_switches(proc.pid)
                    r = run.h2load(f"https://127.0.0.1:{proxy_port}{run.NAMESPACE_PATH}", conns, proto, args.duration, auth)
                    cpu1, cs1 = run.cpu_split(proc.pid), context_switches(proc.pid)
                    n = r["n"]
                    user, system = (1e6 * (cpu1[i] - cpu0[i]) / n for i in (0, 1))
                    print(f"  {name:>12}: {r['rps']:.0f} req/s, p50 {r['p50']:.3f} ms (+{r['p50'] - direct['p50']:.3f}), "
                          f"p99 {r['p99']:.3f} ms ({r['p99'] / direct['p99']:.2f}x), CPU {user + system:.1f} us/req "
                          f"(user {user:.1f}, system {system:.1f}), CPU ratio {(user + system) / upstream_us:.2f}, "
                          f"context switches {(cs1 - cs0) / n:.2f}/req", flush=True)
    finally:
        for _, proc, _ in proxies:
            proc.stop()
        upstream.stop()


if __name__ == "__main__":
    main()
