#!/usr/bin/env python3
"""Audit cost: the same load through proxies that differ only in auditing, in one run.

Usage: bench/audit.py [--duration SECONDS]

Proxies, each in front of the fast upstream of bench/run.py:
  off          no audit flags;
  log          --audit-policy-file (Metadata for everything) and --audit-log-path;
  dead webhook the same plus --audit-webhook-config-file naming a closed port (every batch fails
               and is retried with backoff, then dropped);
  hung webhook the same with a receiver that accepts connections and never answers.
Each is measured with h2load (HTTP/1.1, 1 and 16 connections); the report gives req/s, p50 and
p99 and the ratios to `off`. A dead or hung receiver must not change them (issue 7).
"""
import argparse
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the harness's helpers: h2load, Proc, start_proxy, free_port)

POLICY = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"


def webhook_kubeconfig(path, port):
    path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: receiver
  cluster: {{server: "http://127.0.0.1:{port}/audit"}}
users:
- name: proxy
  user: {{}}
contexts:
- name: receiver
  context: {{cluster: receiver, user: proxy}}
current-context: receiver
""")


def hung_receiver():
    """Accepts connections and never answers; returns its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    held = []

    def accept():
        while True:
            conn, _ = listener.accept()
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement (default 10)")
    args = parser.parse_args()
    run.ensure_tools()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "kube-oidc-proxy", "--example",
                    "bench_upstream"], cwd=run.REPO, check=True)
    target = run.REPO / "target"
    binary = target / "release/kube-oidc-proxy"
    work = Path(tempfile.mkdtemp(prefix="kube-oidc-proxy-audit-bench-"))
    upstream = run.Proc([str(target / "release/examples/bench_upstream"), str(work)], read_stdout=True)
    port = int(upstream.p.stdout.readline().split()[1])
    issuer = {"url": f"https://127.0.0.1:{port}", "client_id": "kube", "ca": f"{work}/ca.crt"}
    upstream_args = [f"--server=https://127.0.0.1:{port}", f"--certificate-authority={work}/ca.crt",
                     "--token=bench"]
    (work / "policy.yaml").write_text(POLICY)
    dead = work / "dead.kubeconfig"
    webhook_kubeconfig(dead, run.free_port())
    hung = work / "hung.kubeconfig"
    webhook_kubeconfig(hung, hung_receiver())
    audit = [f"--audit-policy-file={work}/policy.yaml", f"--audit-log-path={work}/audit.log",
             "--audit-log-maxsize=50", "--audit-log-maxbackup=1", "--audit-webhook-batch-max-wait=1s",
             "--audit-webhook-initial-backoff=1s"]
    variants = {
        "off": [],
        "log": audit[:4],
        "dead webhook": [*audit, f"--audit-webhook-config-file={dead}"],
        "hung webhook": [*audit, f"--audit-webhook-config-file={hung}"],
    }
    token = (work / "token").read_text().strip()
    headers = [f"authorization: Bearer {token}"]
    results = {}
    try:
        for conns in (1, 16):
            for name, extra in variants.items():
                proxy, proxy_port = run.start_proxy(binary, work, issuer, [*upstream_args, *extra])
                try:
                    url = f"https://127.0.0.1:{proxy_port}{run.NAMESPACE_PATH}"
                    results[(name, conns)] = run.h2load(url, conns, "h1", args.duration, headers)
                finally:
                    proxy.stop()
                r = results[(name, conns)]
                run.log(f"{name} c={conns}: {r['rps']:.0f} req/s, p50 {r['p50']:.3f} ms, p99 {r['p99']:.3f} ms")
    finally:
        upstream.stop()
    lines = ["| audit | conns | req/s | p50 ms | p99 ms | req/s vs off | p50 vs off | p99 vs off |",
             "|---|---|---|---|---|---|---|---|"]
    for (name, conns), r in results.items():
        base = results[("off", conns)]
        lines.append(f"| {name} | {conns} | {r['rps']:.0f} | {r['p50']:.3f} | {r['p99']:.3f} | "
                     f"{r['rps'] / base['rps']:.2f} | {r['p50'] / base['p50']:.2f} | {r['p99'] / base['p99']:.2f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
