#!/usr/bin/env python3
"""Cluster benchmarks (issue: Cluster). Not a test: it measures, on loopback, with real processes.

  1. leader failover: kill -9 the leader of 3 coordinators, time to the first write accepted
     through a survivor; the killed node is restarted between trials (p50/p95 over --kills)
  2. dead-worker detection: kill -9 a worker, time until the leader marks it DOWN
     (default settings: heartbeat 1 s, SUSPECT 2 s, DOWN 5 s), over --trials
  3. durable write throughput on 3 coordinators with 1, 16, 64 clients (`cortex loadgen writes`)
  4. leader CPU and memory with N simulated heartbeating nodes (`cortex loadgen heartbeats`:
     each a real joined node with its own certificate and mTLS connection), N = --sim

usage: scripts/bench-cluster.py [--binary target/release/cortex] [--kills 20] [--trials 20]
                                [--seconds 10] [--json out.json] [--logs DIR]

With --logs DIR each node's log is kept in DIR/<name>.log (info level), bench lines mark each
kill, and the failover section prints per kill when the first survivor became a candidate, when
one became leader, and when the first write was accepted.

Three coordinators and the client share this machine, where in a real cluster each coordinator
has a host of its own. By default every cortex process here runs one tokio worker thread
(`TOKIO_WORKER_THREADS=1`, --worker-threads), its share of a 2-core host: with tokio's default
(a worker per CPU) four processes put eight workers on two cores, and in alternating runs
(2026-12-03) 1 and 16 clients wrote ~20 % less, from context switches rather than the cluster's
own work (64 clients: within the VM's noise). --worker-threads 0 keeps tokio's default; the
setting is printed first and kept in the JSON.
"""
import argparse, json, os, resource, signal, statistics, subprocess, sys, tempfile, time, urllib.request

from benchlib import free_port, cpu_seconds, rss_mb


CLUSTERS = []  # every cluster started, so an error never leaves nodes running (or stopped)


class Cluster:
    def __init__(self, binary, sb, extra_env=(), logs=None, log_level="warn"):
        CLUSTERS.append(self)
        self.bin, self.sb, self.logs = binary, sb, logs
        if logs:
            os.makedirs(logs, exist_ok=True)
        os.makedirs(os.path.join(sb, "root"), exist_ok=True)
        open(os.path.join(sb, "cmdline"), "w").close()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CORTEX_")}
        self.env.update(HOME=sb, CORTEX_CONFIG_ROOT=os.path.join(sb, "root"),
                        CORTEX_CMDLINE_FILE=os.path.join(sb, "cmdline"), CORTEX_LOG="warn",
                        CORTEX_CA_FILE=os.path.join(sb, "c1", "ca.crt"),
                        CORTEX_TOKEN_FILE=os.path.join(sb, "c1", "admin.token"))
        # No self-benchmark at node start: seconds of full load would skew every timing here.
        self.env["CORTEX_BENCH__ON_START"] = "false"
        for kv in extra_env:
            k, _, v = kv.partition("=")
            self.env[k] = v
        self.node_env = dict(self.env, CORTEX_LOG=log_level)
        self.procs, self.addrs, self.http = {}, {}, {}

    def cli(self, *args, server=None, check=True):
        cmd = [self.bin, *args]
        if server:
            cmd += ["--server", server]
        r = subprocess.run(cmd, env=self.env, capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {r.stderr}")
        return r

    def start(self, name, token=None, role="coordinator"):
        data = os.path.join(self.sb, name)
        if name not in self.addrs:
            self.addrs[name] = f"127.0.0.1:{free_port()}"
            self.http[name] = f"127.0.0.1:{free_port()}"
        if token is None and name == "c1":
            cmd = [self.bin, "-o", "json", "up"]
        else:
            cmd = [self.bin, "-o", "json", "agent", "--role", role] + (["--token", token] if token else [])
        cmd += ["--data-dir", data, "--grpc-addr", self.addrs[name], "--http-addr", self.http[name], "--node-name", name]
        err = open(os.path.join(self.logs, f"{name}.log"), "ab") if self.logs else subprocess.DEVNULL
        self.procs[name] = subprocess.Popen(cmd, env=self.node_env, stdout=subprocess.PIPE, stderr=err)
        if self.logs:
            err.close()
        # Printed once serving (coordinators) or approved (agents); nothing means it exited.
        if not self.procs[name].stdout.readline():
            code = self.procs[name].wait()
            where = f"; its log: {os.path.join(self.logs, name + '.log')}" if self.logs else " (rerun with --logs DIR to keep its log)"
            raise RuntimeError(f"{name} exited with status {code} before it was serving or approved{where}")

    def mark(self, text):
        """A line with a UTC timestamp in every node's log, to line the logs up with the client."""
        if self.logs:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1e6) % 1000000:06d}Z"
            for name in self.addrs:
                with open(os.path.join(self.logs, f"{name}.log"), "a") as f:
                    f.write(f"{stamp} ===== bench: {text}\n")

    def kill(self, name):
        p = self.procs.pop(name)
        p.send_signal(signal.SIGKILL)
        p.wait()

    def status(self, name):
        r = self.cli("-o", "json", "status", server=self.addrs[name], check=False)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def node_state(self, via, node_name):
        try:
            with urllib.request.urlopen(f"http://{self.http[via]}/api/v1/nodes/{node_name}", timeout=1) as r:
                return json.load(r)["state"]
        except Exception:
            return None

    def stop_all(self):
        for name in list(self.procs):
            self.kill(name)


def wait(cond, timeout=60, step=0.05, what=None):
    """Polls `cond` until it returns something true; `what()` describes the state on a timeout."""
    end = time.time() + timeout
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise TimeoutError(f"condition not met within {timeout} s" + (f": {what()}" if what else ""))


def three_coordinators(c):
    """Starts c1 (`cortex up`) and joins c2 and c3 as coordinators; waits for three voters.
    Returns ({name: node id}, the leader's name)."""
    c.start("c1")
    wait(lambda: c.status("c1") and c.status("c1")["leader_id"])
    token = c.cli("token", "create", "--auto-approve", server=c.addrs["c1"]).stdout.strip()
    c.start("c2", token)
    c.start("c3", token)
    wait(lambda: (c.status("c1") or {}).get("voters") and len(c.status("c1")["voters"]) == 3)
    ids = {n: c.status(n)["node_id"] for n in ("c1", "c2", "c3")}
    leader = wait(lambda: (c.status("c1") or {}).get("leader_id"))
    return ids, next(n for n, i in ids.items() if i == leader)


def settled(c, ids):
    """The leader's name once the cluster is in a steady state: every node answers, all agree on
    one leader and term, there is exactly one leader, and every node has the same last log index
    and has applied it (a restarted node has caught up). Killing before that measures a double
    fault (a survivor that restarted a moment ago and is behind), not a leader failover."""
    sts = [c.status(n) for n in ids]
    if any(s is None for s in sts):
        return None
    if len({(s.get("leader_id"), s.get("term")) for s in sts}) != 1 or sts[0].get("leader_id") is None:
        return None
    if sorted(s.get("raft_role") for s in sts) != ["follower", "follower", "leader"]:
        return None
    if len({s.get("last_log_index") for s in sts}) != 1 or len({s.get("applied_index") for s in sts}) != 1:
        return None
    return next(n for n, i in ids.items() if i == sts[0]["leader_id"])


def log_lines(path):
    """(unix time, line) for each timestamped line of a node's log."""
    import datetime
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            if len(line) > 27 and line[4] == "-" and line[26] == "Z":
                try:
                    t = datetime.datetime.strptime(line[:27], "%Y-%m-%dT%H:%M:%S.%fZ")
                except ValueError:
                    continue
                out.append((t.replace(tzinfo=datetime.timezone.utc).timestamp(), line.rstrip()))
    return out


def phases(logs, trials):
    """Per kill, from the survivors' `raft: role or leader changed` lines (info level): when the
    first survivor became a candidate (the leader's loss noticed: election timeout), when one
    became leader (the election), and the rest up to the first accepted write (the new leader's
    first entries committed, then the client's next attempt)."""
    lines = {n: log_lines(os.path.join(logs, f"{n}.log")) for n in ("c1", "c2", "c3")}
    rows = []
    for t in trials:
        t0, t1 = t["kill_at_unix"], t["kill_at_unix"] + t["seconds"]
        cand, lead, elections = None, None, 0
        for n, ls in lines.items():
            if n == t["killed"]:
                continue
            for ts, l in ls:
                if not (t0 <= ts <= t1) or "raft: role or leader changed" not in l:
                    continue
                if "role=\"candidate\"" in l or "role=candidate" in l:
                    elections += 1
                    cand = ts if cand is None else min(cand, ts)
                if ("role=\"leader\"" in l or "role=leader" in l) and lead is None:
                    lead = ts
        row = {"kill": t["kill"], "total": t["seconds"], "elections": elections,
               "to_candidate": round(cand - t0, 3) if cand else None,
               "election": round(lead - cand, 3) if cand and lead else None,
               "to_write": round(t1 - lead, 3) if lead else None}
        rows.append(row)
        print(f"  kill {t['kill']:>2}: {t['seconds']:.2f} s = first candidate {row['to_candidate']} s"
              f" + election {row['election']} s ({elections} candidacies) + to first write {row['to_write']} s", flush=True)
    def med(key):
        xs = [r[key] for r in rows if r[key] is not None]
        return round(statistics.median(xs), 3) if xs else None
    print(f"phases (median): first candidate {med('to_candidate')} s, election {med('election')} s, "
          f"leader to first write {med('to_write')} s", flush=True)
    return rows


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


def summary(xs):
    return {"n": len(xs), "p50": pct(xs, 0.5), "p95": pct(xs, 0.95), "min": min(xs), "max": max(xs),
            "mean": statistics.mean(xs)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="target/release/cortex")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--shared-connections", type=lambda v: [int(x) for x in v.split(",") if x], default=[4, 1],
                    help="extra 64-client write runs over this many shared connections (default 4,1; \"\" for none)")
    ap.add_argument("--keys", type=int, default=1,
                    help="distinct label keys the write clients share (default 1: every write is the same size "
                    "at 1, 16 and 64 clients; with one key per client the node's label set, which each "
                    "write answers with, grows with the client count)")
    ap.add_argument("--sim", default="100,1000")
    ap.add_argument("--sim-seconds", type=float, default=30)
    ap.add_argument("--skip", default="", help="comma list of sections to skip: writes,failover,detection,sim")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for every cortex process, e.g. CORTEX_RAFT__HEARTBEAT_INTERVAL_MS=150")
    ap.add_argument("--worker-threads", type=int, default=1,
                    help="tokio worker threads of every cortex process (TOKIO_WORKER_THREADS; default 1, "
                    "a process's share of this machine; 0: tokio's default, one per CPU)")
    ap.add_argument("--freeze", action="store_true",
                    help="failover: SIGSTOP the leader instead of kill -9 (its sockets stay open and its "
                    "kernel still accepts connections, like a hung host), then kill it before restarting")
    ap.add_argument("--settle", type=float, default=1.0,
                    help="seconds to wait after the cluster is settled before each kill")
    ap.add_argument("--logs", metavar="DIR", help="keep each node's stderr in DIR/<name>.log and print where each "
                    "failover's time went (needs info level, the default with --logs)")
    ap.add_argument("--log-level", help="CORTEX_LOG for the nodes (default: warn; info,openraft=warn with --logs)")
    ap.add_argument("--json")
    a = ap.parse_args()
    if a.log_level is None:
        a.log_level = "info,openraft=warn" if a.logs else "warn"
    if a.worker_threads < 0:
        sys.exit("--worker-threads must be 0 (tokio's default) or more")
    # Not inherited from this shell: 0 must mean tokio's default, as printed.
    os.environ.pop("TOKIO_WORKER_THREADS", None)
    if a.worker_threads:
        a.env = [f"TOKIO_WORKER_THREADS={a.worker_threads}", *a.env]
    threads = a.worker_threads or f"tokio's default ({os.cpu_count()})"
    print(f"every cortex process: {threads} tokio worker thread(s), {os.cpu_count()} CPUs", flush=True)
    out = {"worker_threads": a.worker_threads, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as sb:
        c = Cluster(a.binary, sb, a.env, a.logs, a.log_level)
        ids, lname = three_coordinators(c)

        skip = set(a.skip.split(","))
        # 3. throughput first, on a healthy cluster.
        out["writes_3_coordinators"] = []
        if "writes" in skip:
            a.seconds = 0
        # The last runs are the floor: the same 64 clients calling WhoAmI over their own and over
        # the first shared connection count (same gRPC, mTLS and token check, no Raft). No write
        # through the API can go faster than that on this host.
        runs = [(n, n, "set-labels") for n in (1, 16, 64)] + [(64, k, "set-labels") for k in a.shared_connections]
        runs += [(64, k, "who-am-i") for k in [64] + a.shared_connections[:1]]
        for n, conns, call in (runs if a.seconds > 0 else ()):
            cpu0 = sum(cpu_seconds(p.pid) for p in c.procs.values())
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            log0 = c.status(lname)["last_log_index"]
            r = json.loads(c.cli("-o", "json", "loadgen", "writes", "--node", "c1", "--clients", str(n),
                                 "--connections", str(conns), "--keys", str(a.keys), "--seconds", str(a.seconds),
                                 "--call", call, server=c.addrs[lname]).stdout)
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu1 = sum(cpu_seconds(p.pid) for p in c.procs.values())
            calls = max(r["writes"], 1)
            # Raft entries the run added (group commit puts many writes in one).
            r["raft_entries"] = c.status(lname)["last_log_index"] - log0
            r["cluster_cpu_us_per_call"] = (cpu1 - cpu0) / calls * 1e6
            r["client_cpu_us_per_call"] = ((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)) / calls * 1e6
            out["writes_3_coordinators"].append(r)
            what = "writes/s" if call == "set-labels" else "WhoAmI/s (floor: no Raft)"
            print(f"3 coordinators, {n:>2} clients over {conns:>2} connections: {r['writes_per_sec']:>8.0f} {what}"
                  f"  p50 {r['latency_ms_p50']:.2f} ms  p99 {r['latency_ms_p99']:.2f} ms"
                  f"  CPU/call: coordinators {r['cluster_cpu_us_per_call']:.0f} us, client {r['client_cpu_us_per_call']:.0f} us"
                  + (f"  {r['writes'] / max(r['raft_entries'], 1):.1f} writes/entry" if call == "set-labels" else ""),
                  flush=True)

        # 1. failover. Each kill starts from a settled cluster (see `settled`). Every write
        # attempt is recorded (start and end relative to the kill, exit code, last line of the
        # error), so a slow kill shows which attempt took the time; with --logs the nodes' own
        # timestamps say when each survivor became a candidate and when one became leader.
        times, trials = [], []
        for k in range(0 if "failover" in skip else a.kills):
            lname = wait(lambda: settled(c, ids), timeout=120)
            time.sleep(a.settle)
            before = {n: c.status(n) for n in ids}
            if settled(c, ids) != lname:
                lname = wait(lambda: settled(c, ids), timeout=120)
            survivor = next(n for n in ids if n != lname)
            c.mark(f"kill {k}: {'freezing' if a.freeze else 'killing'} leader {lname}")
            if a.freeze:
                c.procs[lname].send_signal(signal.SIGSTOP)
            else:
                c.kill(lname)
            t0 = time.time()
            attempts = []

            def attempt():
                s0 = time.time()
                r = c.cli("node", "label", survivor, f"k={k}", server=c.addrs[survivor], check=False)
                err = (r.stderr.strip().splitlines() or [""])[-1][:200]
                attempts.append({"start": round(s0 - t0, 3), "end": round(time.time() - t0, 3), "rc": r.returncode, "error": err})
                return r.returncode == 0

            wait(attempt, timeout=60, step=0.02)
            times.append(time.time() - t0)
            new_leader = (c.status(survivor) or {}).get("leader_id")
            trial = {"kill": k, "killed": lname, "via": survivor, "new_leader": next((n for n, i in ids.items() if i == new_leader), None),
                     "kill_at_unix": t0, "seconds": round(times[-1], 3), "attempts": attempts,
                     "before": {n: {f: (before[n] or {}).get(f) for f in ("term", "last_log_index", "applied_index")} for n in ids}}
            trials.append(trial)
            slowest = max(attempts, key=lambda x: x["end"] - x["start"])
            print(f"  kill {k:>2}: {lname} killed, {trial['new_leader']} leads, write via {survivor}: {times[-1]:.2f} s, "
                  f"{len(attempts)} attempts, slowest {slowest['end'] - slowest['start']:.2f} s at {slowest['start']:.2f} s"
                  f" ({slowest['error'] or 'ok'})", flush=True)
            if a.freeze:
                c.kill(lname)
            c.start(lname)
            wait(lambda: all(c.node_state(survivor, n) == "ready" for n in ids), timeout=60)
        out["failover_s"] = summary(times) if times else None
        out["failover_trials"] = trials
        if times: print(f"failover ({'SIGSTOP' if a.freeze else 'kill -9'} leader -> first accepted write), {len(times)} kills: p50 {out['failover_s']['p50']:.2f} s"
              f"  p95 {out['failover_s']['p95']:.2f} s  [{min(times):.2f}-{max(times):.2f}]", flush=True)
        if times and a.logs:
            out["failover_phases"] = phases(a.logs, trials)

        # 2. detection
        wtoken = c.cli("token", "create", "--auto-approve", server=c.addrs["c1"]).stdout.strip()
        det = []
        for _ in range(0 if "detection" in skip else a.trials):
            c.start("w1", wtoken, role="worker")
            leader = wait(lambda: (c.status("c1") or {}).get("leader_id"))
            lname = next(n for n, i in ids.items() if i == leader)
            wait(lambda: c.node_state(lname, "w1") == "ready", timeout=30,
                 what=lambda: f"w1 is {c.node_state(lname, 'w1')!r} on {lname}, its process "
                              + ("running" if c.procs["w1"].poll() is None else f"exited {c.procs['w1'].returncode}"))
            time.sleep(1.5)
            c.kill("w1")
            t0 = time.time()
            wait(lambda: c.node_state(lname, "w1") == "down", timeout=30, step=0.02)
            det.append(time.time() - t0)
        out["detection_s"] = summary(det) if det else None
        if det: print(f"dead-worker detection (kill -9 -> DOWN), {len(det)} trials: p50 {out['detection_s']['p50']:.2f} s"
              f"  p95 {out['detection_s']['p95']:.2f} s  [{min(det):.2f}-{max(det):.2f}]", flush=True)
        c.stop_all()

    # 4. simulated nodes, each N on a fresh single coordinator
    out["simulated_nodes"] = []
    for n in ([] if "sim" in a.skip.split(",") else [int(x) for x in a.sim.split(",")]):
        with tempfile.TemporaryDirectory() as sb:
            c = Cluster(a.binary, sb, a.env)
            c.start("c1")
            wait(lambda: c.status("c1") and c.status("c1")["leader_id"])
            token = c.cli("token", "create", "--auto-approve", server=c.addrs["c1"]).stdout.strip()
            pid = c.procs["c1"].pid
            gen = subprocess.Popen([a.binary, "loadgen", "heartbeats", "--token", token, "--ca-file",
                                    os.path.join(sb, "c1", "ca.crt"), "--nodes", str(n), "--seconds",
                                    str(a.sim_seconds + 10)], env=c.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            wait(lambda: len(json.loads(urllib.request.urlopen(f"http://{c.http['c1']}/api/v1/nodes").read())["nodes"]) >= n + 1,
                 timeout=600, step=0.5)
            time.sleep(5)
            c0, t0 = cpu_seconds(pid), time.time()
            time.sleep(a.sim_seconds)
            c1s, t1 = cpu_seconds(pid), time.time()
            r = {"nodes": n, "leader_cpu_percent": 100 * (c1s - c0) / (t1 - t0), "leader_rss_mb": rss_mb(pid)}
            states = [x["state"] for x in json.loads(urllib.request.urlopen(f"http://{c.http['c1']}/api/v1/nodes").read())["nodes"]]
            r["ready"] = states.count("ready")
            gen.wait()
            r["loadgen"] = json.loads(gen.stdout.read().decode().strip().splitlines()[-1])
            out["simulated_nodes"].append(r)
            print(f"{n:>5} simulated nodes heartbeating 1/s: leader CPU {r['leader_cpu_percent']:.1f} % of one core, "
                  f"RSS {r['leader_rss_mb']:.1f} MB, {r['ready']} ready", flush=True)
            c.stop_all()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    try:
        main()
    finally:
        for cluster in CLUSTERS:
            cluster.stop_all()
