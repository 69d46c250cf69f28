#!/usr/bin/env python3
"""kube-oidc-proxy benchmark: every scenario measured twice in one run, straight to the upstream
and through the proxy, and reported as ratios (see BENCHMARKS.md).

Usage: bench/run.py [--duration SECONDS] [--out FILE] [--skip-cluster] [--quick]

Needs h2load (Debian nghttp2-client) and wrk (Debian wrk); installs them with apt-get when
missing and allowed. Builds the proxy and the fast upstream (examples/bench_upstream.rs) in
release mode. Load goes to 127.0.0.1 only and every run is bounded in time.
"""
import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
NAMESPACE_PATH = "/api/v1/namespaces/default"
WATCH_PATH = "/api/v1/namespaces/default/configmaps?watch=true"


def log(*args):
    print("[bench]", *args, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ensure_tools():
    missing = [pkg for tool, pkg in (("h2load", "nghttp2-client"), ("wrk", "wrk")) if not shutil.which(tool)]
    if missing:
        log("installing", *missing)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def cpu_split(pid):
    """(user, system) CPU seconds of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK  # utime, stime


def cpu_seconds(pid):
    return sum(cpu_split(pid))


def rss_kib(pid, field="VmRSS"):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def h2load(url, conns, proto, duration, headers):
    """Runs h2load for `duration` seconds; returns req/s and latency percentiles in ms."""
    with tempfile.NamedTemporaryFile(suffix=".log") as logf:
        cmd = ["h2load", "-c", str(conns), "-m", "1", "-D", str(duration), "--warm-up-time=1",
               "--log-file", logf.name]
        if proto == "h1":
            cmd.append("--h1")
        for h in headers:
            cmd += ["-H", h]
        cmd.append(url)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
        m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
        codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
        if not m or not codes or int(codes.group(1)) == 0 or int(codes.group(3)) + int(codes.group(4)):
            raise RuntimeError(f"h2load failed for {url}:\n{out}")
        lat = sorted(int(line.split("\t")[2]) / 1000 for line in Path(logf.name).read_text().splitlines() if line)
    return {"rps": float(m.group(1)), "p50": percentile(lat, 50), "p99": percentile(lat, 99),
            "p999": percentile(lat, 99.9), "n": len(lat)}


def measured(fn, pids):
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    result = fn()
    after = {name: cpu_seconds(pid) for name, pid in pids.items()}
    result["requests"] = result["rps"]  # filled below
    return result, {name: after[name] - before[name] for name in pids}


class Proc:
    # stdout is piped only when the caller reads it: an unread pipe fills and blocks the writer.
    def __init__(self, cmd, read_stdout=False, **kw):
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE if read_stdout else subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, text=True, **kw)

    @property
    def pid(self):
        return self.p.pid

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()


def wait_ready(probe_port, proc):
    import urllib.request
    for _ in range(200):
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{probe_port}/ready", timeout=1).status == 200:
                return
        except Exception:
            pass
        if proc.p.poll() is not None:
            raise RuntimeError("proxy exited")
        time.sleep(0.1)
    raise RuntimeError("proxy not ready")


def start_proxy(binary, out, issuer, upstream_args):
    port, probe = free_port(), free_port()
    proc = Proc([str(binary), "--bind-address=127.0.0.1", f"--secure-port={port}",
                 f"--readiness-probe-port={probe}", f"--tls-cert-file={out}/serving.crt",
                 f"--tls-private-key-file={out}/serving.key", f"--oidc-issuer-url={issuer['url']}",
                 f"--oidc-client-id={issuer['client_id']}", f"--oidc-ca-file={issuer['ca']}",
                 f"--oidc-username-claim={issuer.get('username_claim', 'sub')}",
                 "--oidc-groups-claim=groups", *upstream_args])
    wait_ready(probe, proc)
    proc.probe_port = probe
    return proc, port


def latency_rows(label, direct_url, proxy_url, pids_direct, pids_proxy, headers_direct, headers_proxy,
                 duration, conns_list=(1, 16, 64), protos=("h1", "h2")):
    rows = []
    for proto in protos:
        for conns in conns_list:
            d, dcpu = measured(lambda: h2load(direct_url, conns, proto, duration, headers_direct), pids_direct)
            p, pcpu = measured(lambda: h2load(proxy_url, conns, proto, duration, headers_proxy), pids_proxy)
            row = {"scenario": label, "proto": proto, "conns": conns, "direct": d, "proxy": p,
                   "upstream_cpu_us": 1e6 * dcpu["upstream"] / max(d["n"], 1),
                   "proxy_cpu_us": 1e6 * pcpu["proxy"] / max(p["n"], 1),
                   "upstream_cpu_us_via_proxy": 1e6 * pcpu["upstream"] / max(p["n"], 1)}
            log(f"{label} {proto} c={conns}: direct {d['rps']:.0f} req/s p50 {d['p50']:.3f} ms | "
                f"proxy {p['rps']:.0f} req/s p50 {p['p50']:.3f} ms, proxy CPU {row['proxy_cpu_us']:.1f} us/req, "
                f"upstream CPU {row['upstream_cpu_us']:.1f} us/req")
            rows.append(row)
    return rows


async def hold_watches(port, path, headers, count):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conns = []
    sem = asyncio.Semaphore(50)

    async def one():
        async with sem:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
            head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(f"{h}\r\n" for h in headers) + "\r\n"
            writer.write(head.encode())
            await writer.drain()
            line = await reader.readline()
            if b" 200 " not in line:
                raise RuntimeError(f"watch refused: {line!r}")
            conns.append(writer)

    await asyncio.gather(*(one() for _ in range(count)))
    return conns


def memory_rows(proxy, proxy_port, upstream_port, token):
    rows = {}
    time.sleep(1)
    rows["idle_rss_kib"] = rss_kib(proxy.pid)
    rows["idle_hwm_kib"] = rss_kib(proxy.pid, "VmHWM")
    auth = [f"Authorization: Bearer {token}"]
    loop = asyncio.new_event_loop()
    # A watch by kube-apiserver's rule (a resource path with watch=true), so the proxy routes and
    # counts it as long-running; a plain "/watch" would be a short request.
    conns = loop.run_until_complete(hold_watches(proxy_port, WATCH_PATH, auth, 1000))
    time.sleep(1)
    rows["watches_1000_rss_kib"] = rss_kib(proxy.pid)
    for w in conns:
        w.close()
    loop.run_until_complete(asyncio.sleep(0.5))
    loop.close()
    time.sleep(1)
    before = rss_kib(proxy.pid)
    samples = []
    gib = 1 << 30
    curl = subprocess.Popen(["curl", "-sk", "-o", "/dev/null", "-w", "%{size_download}", "-H",
                             f"Authorization: Bearer {token}",
                             f"https://127.0.0.1:{proxy_port}/big?bytes={gib}"], stdout=subprocess.PIPE, text=True)
    while curl.poll() is None:
        samples.append(rss_kib(proxy.pid))
        time.sleep(0.1)
    size = int(curl.stdout.read() or 0)
    if size != gib:
        raise RuntimeError(f"1 GiB stream came through with {size} bytes")
    rows["stream_1g_before_rss_kib"] = before
    rows["stream_1g_max_rss_kib"] = max(samples) if samples else before
    rows["stream_1g_samples"] = len(samples)
    return rows


def long_running_in_flight(proxy):
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{proxy.probe_port}/metrics", timeout=5).read().decode()
    m = re.search(r'^kube_oidc_proxy_requests_in_flight\{kind="long_running"\} (\d+)', text, re.M)
    return int(m.group(1)) if m else 0


def h2_watches_rss(proxy, proxy_port, token, count, per_conn=100):
    """RSS with `count` watches held the way client-go holds them: streams multiplexed over HTTP/2
    connections (h2load, `per_conn` streams each: the proxy's default stream limit)."""
    conns = -(-count // per_conn)
    load = subprocess.Popen(["h2load", "-c", str(conns), "-m", str(per_conn), "-n", str(count),
                             "-H", f"authorization: Bearer {token}",
                             f"https://127.0.0.1:{proxy_port}{WATCH_PATH}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while long_running_in_flight(proxy) < count:
            if time.time() > deadline or load.poll() is not None:
                raise RuntimeError(f"only {long_running_in_flight(proxy)} of {count} HTTP/2 watches opened")
            time.sleep(0.2)
        time.sleep(1)
        return rss_kib(proxy.pid)
    finally:
        load.kill()
        load.wait()


WRK_TOKENS_LUA = """
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do tokens[#tokens + 1] = line end
local i = 0
request = function()
  i = i + 1
  local t = tokens[(i % #tokens) + 1]
  return wrk.format("GET", nil, {["Authorization"] = "Bearer " .. t})
end
"""


def wrk_rps(url, tokens_file, duration, conns=16):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_TOKENS_LUA)
        script = f.name
    out = subprocess.run(["wrk", "-t", "2", "-c", str(conns), "-d", f"{duration}s", "-s", script, url],
                         capture_output=True, text=True, env={**os.environ, "BENCH_TOKENS": str(tokens_file)},
                         timeout=duration + 60).stdout
    os.unlink(script)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m or "Non-2xx" in out:
        raise RuntimeError(f"wrk failed:\n{out}")
    return float(m.group(1))


def cluster_rows(binary, out_dir, duration):
    env = {**os.environ, "KUBE_OIDC_PROXY_TESTENV_DIR": str(REPO / "target/testenv/bench")}
    subprocess.run([str(REPO / "scripts/cluster"), "up"], check=True, env=env)
    try:
        envfile = subprocess.run([str(REPO / "scripts/cluster"), "env"], check=True, env=env,
                                 capture_output=True, text=True).stdout.strip()
        e = dict(re.findall(r"^export (\w+)='(.*)'$", Path(envfile).read_text(), re.M))
        kubectl = [e["KUBECTL"], "--kubeconfig", e["ADMIN_KUBECONFIG"]]
        subprocess.run(kubectl + ["-n", "default", "create", "serviceaccount", "bench"], capture_output=True)
        # Its own role: the aggregated `view` is empty here (no controller manager aggregates it).
        subprocess.run(kubectl + ["create", "clusterrole", "bench-read", "--verb=get,list",
                                  "--resource=namespaces,configmaps"], capture_output=True)
        subprocess.run(kubectl + ["create", "clusterrolebinding", "bench-read", "--clusterrole=bench-read",
                                  "--serviceaccount=default:bench", "--user=alice@example.com"], capture_output=True)
        for i in range(20):
            subprocess.run(kubectl + ["-n", "default", "create", "configmap", f"bench-{i}",
                                      f"--from-literal=key={'v' * 200}"], capture_output=True)
        sa_token = subprocess.run(kubectl + ["-n", "default", "create", "token", "bench", "--duration=2h"],
                                  check=True, capture_output=True, text=True).stdout.strip()
        dex_token = subprocess.run([str(REPO / "scripts/cluster"), "token", "alice"], check=True, env=env,
                                   capture_output=True, text=True).stdout.strip()
        issuer = {"url": e["DEX_ISSUER_URL"], "client_id": e["DEX_CLIENT_ID"], "ca": e["DEX_CA_FILE"],
                  "username_claim": "email"}
        proxy, port = start_proxy(binary, out_dir, issuer, [f"--kubeconfig={e['PROXY_UPSTREAM_KUBECONFIG']}"])
        # scripts/cluster's pids file: one "NAME PID BINARY" line per component.
        apiserver = next(int(line.split()[1]) for line in Path(e["TESTENV_DIR"], "pids").read_text().splitlines()
                         if line.split()[0] == "kube-apiserver")
        try:
            rows = []
            for label, path in (("kube-apiserver get", NAMESPACE_PATH),
                                ("kube-apiserver list", "/api/v1/namespaces/default/configmaps")):
                rows += latency_rows(label, e["KUBE_APISERVER_URL"] + path, f"https://127.0.0.1:{port}{path}",
                                     {"upstream": apiserver}, {"proxy": proxy.pid, "upstream": apiserver},
                                     [f"authorization: Bearer {sa_token}"], [f"authorization: Bearer {dex_token}"],
                                     duration, conns_list=(1, 16), protos=("h2",))
            return rows
        finally:
            proxy.stop()
    finally:
        subprocess.run([str(REPO / "scripts/cluster"), "down"], env=env)


def fmt_table(rows):
    lines = ["| scenario | proto | conns | direct req/s | proxy req/s | req/s ratio | p50 direct / proxy (ms) | "
             "p99 direct / proxy (ms) | p99.9 direct / proxy (ms) | p99 ratio | proxy CPU µs/req | upstream CPU µs/req | CPU ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d, p = r["direct"], r["proxy"]
        cpu_ratio = r["proxy_cpu_us"] / r["upstream_cpu_us"] if r["upstream_cpu_us"] else float("nan")
        lines.append(
            f"| {r['scenario']} | {r['proto']} | {r['conns']} | {d['rps']:.0f} | {p['rps']:.0f} | {p['rps'] / d['rps']:.2f} | "
            f"{d['p50']:.3f} / {p['p50']:.3f} | {d['p99']:.3f} / {p['p99']:.3f} | {d['p999']:.3f} / {p['p999']:.3f} | "
            f"{p['p99'] / d['p99']:.2f} | {r['proxy_cpu_us']:.1f} | {r['upstream_cpu_us']:.1f} | {cpu_ratio:.2f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement (default 10)")
    parser.add_argument("--out", default=str(REPO / "target/bench/results.md"))
    parser.add_argument("--skip-cluster", action="store_true", help="skip the real kube-apiserver scenarios")
    parser.add_argument("--quick", action="store_true", help="3 s runs, no cluster (a smoke test of the harness)")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.skip_cluster = 3, True
    ensure_tools()
    log("building release binaries")
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "kube-oidc-proxy", "--example", "bench_upstream"],
                   cwd=REPO, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    binary = target / "release/kube-oidc-proxy"
    work = Path(tempfile.mkdtemp(prefix="kube-oidc-proxy-bench-"))
    upstream = Proc([str(target / "release/examples/bench_upstream"), str(work)], read_stdout=True)
    port = int(upstream.p.stdout.readline().split()[1])
    issuer = {"url": f"https://127.0.0.1:{port}", "client_id": "kube", "ca": f"{work}/ca.crt"}
    proxy, proxy_port = start_proxy(binary, work, issuer, [f"--server=https://127.0.0.1:{port}",
                                                           f"--certificate-authority={work}/ca.crt", "--token=bench"])
    token = (work / "token").read_text().strip()
    results = {}
    try:
        results["idle_rss_kib"] = rss_kib(proxy.pid)
        auth = [f"authorization: Bearer {token}"]
        rows = latency_rows("fast upstream", f"https://127.0.0.1:{port}{NAMESPACE_PATH}",
                            f"https://127.0.0.1:{proxy_port}{NAMESPACE_PATH}",
                            {"upstream": upstream.pid}, {"proxy": proxy.pid, "upstream": upstream.pid},
                            auth, auth, args.duration)
        one = wrk_rps(f"https://127.0.0.1:{proxy_port}{NAMESPACE_PATH}", work / "token", args.duration)
        many = wrk_rps(f"https://127.0.0.1:{proxy_port}{NAMESPACE_PATH}", work / "tokens", args.duration)
        log(f"tokens: one {one:.0f} req/s, 10,000 distinct {many:.0f} req/s")
        after_load_rss = rss_kib(proxy.pid)
        # Memory on fresh proxies: glibc keeps what earlier load freed, which would hide each figure.
        fresh = lambda: start_proxy(binary, work, issuer, [f"--server=https://127.0.0.1:{port}",
                                                          f"--certificate-authority={work}/ca.crt", "--token=bench"])
        proxy.stop()
        proxy, proxy_port = fresh()
        memory = memory_rows(proxy, proxy_port, port, token)
        memory["after_load_rss_kib"] = after_load_rss
        proxy.stop()
        proxy, proxy_port = fresh()
        memory["watches_1000_h2_rss_kib"] = h2_watches_rss(proxy, proxy_port, token, 1000)
        log("memory", memory)
    finally:
        proxy.stop()
        upstream.stop()
    cluster = [] if args.skip_cluster else cluster_rows(binary, work, args.duration)

    report = [f"# Benchmark results ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
              f"Machine: {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') >> 30} GiB; "
              f"{args.duration} s per measurement; h2load with one stream per connection; CPU from /proc/<pid>/stat.", "",
              fmt_table(rows + cluster), "",
              f"Distinct tokens (HTTP/1.1, 16 connections, wrk): one token {one:.0f} req/s, 10,000 users "
              f"{many:.0f} req/s, ratio {many / one:.2f}.", "",
              "Memory of the proxy (RSS, KiB, read from /proc):",
              f"idle {memory['idle_rss_kib']} (after the load runs above: {memory['after_load_rss_kib']}); "
              f"with 1,000 open watches {memory['watches_1000_rss_kib']} "
              f"(one HTTP/1.1 connection each), {memory['watches_1000_h2_rss_kib']} (HTTP/2, 100 per connection); "
              f"streaming 1 GiB: before {memory['stream_1g_before_rss_kib']}, max {memory['stream_1g_max_rss_kib']} "
              f"over {memory['stream_1g_samples']} samples."]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(report) + "\n")
    print("\n".join(report))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
