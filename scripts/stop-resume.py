#!/usr/bin/env python3
"""A coordinator stopped and resumed: does it start an election, and does a join through it work?

Not a test: it measures. Each round starts three coordinators (bench-cluster.py's `Cluster`,
logs kept in LOGDIR/rN), then three times: SIGSTOP a follower, create an auto-approve join token
through the leader, wait 1.5 s, SIGCONT the follower and join a worker through it (the steps of
tests/coordinators.rs `a_token_works_at_once_through_a_coordinator_still_catching_up`). It
prints the joins that failed and, from the resumed node's log, how many resumes were followed
within 1 s by an election it started: by Cortex's timer (`daemon/election.rs` logs "starting an
election" first) or by openraft's own.

usage: scripts/stop-resume.py BINARY [--rounds 12] [--logs DIR]
"""
import argparse, datetime, glob, importlib.util, os, re, signal, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
spec = importlib.util.spec_from_file_location("bc", os.path.join(HERE, "bench-cluster.py"))
bc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bc)


def one_round(binary, r, ldir):
    failed = 0
    with tempfile.TemporaryDirectory() as sb:
        c = bc.Cluster(binary, sb, [], ldir, "info,openraft=warn")
        try:
            _, lead = bc.three_coordinators(c)
            names = ["c1", "c2", "c3"]
            lag = names[(names.index(lead) + 1) % 3]
            for i in range(3):
                c.procs[lag].send_signal(signal.SIGSTOP)
                # Through the leader; after an election the resumed node started it may not
                # know one for a moment (the CLI then says so and exits non-zero).
                fresh = bc.wait(lambda: c.cli("token", "create", "--ttl", "1h", "--auto-approve",
                                              server=c.addrs[lead], check=False).stdout.strip(), timeout=20)
                time.sleep(1.5)
                c.procs[lag].send_signal(signal.SIGCONT)
                c.mark(f"resumed {lag}")
                w = f"w{i}"
                cmd = [binary, "-o", "json", "agent", "--role", "worker", "--token", fresh, "--join", c.addrs[lag],
                       "--data-dir", os.path.join(sb, w), "--grpc-addr", f"127.0.0.1:{bc.free_port()}",
                       "--http-addr", f"127.0.0.1:{bc.free_port()}", "--node-name", w]
                with open(os.path.join(ldir, f"{w}.log"), "ab") as err:
                    p = subprocess.Popen(cmd, env=c.node_env, stdout=subprocess.PIPE, stderr=err)
                c.procs[w] = p
                if not p.stdout.readline():
                    failed += 1
                    print(f"round {r}, join {i} through {lag} (leader {lead}): refused, exit {p.wait()}", flush=True)
        finally:
            c.stop_all()
    return failed


def elections(ldir):
    """(resumes, elections by Cortex's timer, elections by openraft's) in one round's logs."""
    def ts(line):
        return datetime.datetime.strptime(line[:26], "%Y-%m-%dT%H:%M:%S.%f")
    total = ours = theirs = 0
    for f in glob.glob(os.path.join(ldir, "c*.log")):
        name = os.path.basename(f)[:-4]
        lines = open(f, errors="replace").read().splitlines()
        for i, line in enumerate(lines):
            m = re.search(r"===== bench: resumed (c\d)", line)
            if not m or m[1] != name:
                continue
            total += 1
            t0 = ts(line)
            window = [x for x in lines[i + 1:i + 60] if x[:2] == "20" and (ts(x) - t0).total_seconds() < 1.0]
            if any('role="candidate"' in x for x in window):
                if any("starting an election" in x for x in window):
                    ours += 1
                else:
                    theirs += 1
    return total, ours, theirs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--logs", default=None, help="keep the node logs here (default: a temporary directory)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        logs = a.logs or tmp
        failed, resumes, ours, theirs = 0, 0, 0, 0
        for r in range(a.rounds):
            ldir = os.path.join(logs, f"r{r}")
            failed += one_round(a.binary, r, ldir)
            t, o, th = elections(ldir)
            resumes, ours, theirs = resumes + t, ours + o, theirs + th
        print(f"{resumes} resumes: {failed} joins refused; an election within 1 s of the resume: "
              f"{ours} by Cortex's timer, {theirs} by openraft's own")


if __name__ == "__main__":
    main()
