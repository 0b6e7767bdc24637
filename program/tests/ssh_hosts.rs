//! Hosts reached over ssh, and programs started by `scripts/deploy.sh`,
//! with a stand-in `ssh` that runs the remote command on this machine (on
//! loopback addresses 127.0.0.2 and .3), so no real remote is needed.
//!
//! One test in its own binary: it sets PATH for the programs it starts,
//! which must not race with other tests' threads.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use troupe_run::events::Event;
use troupe_run::{Bench, Hosts, Sweep};

fn bin_dir() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_replica")).parent().unwrap()
}

/// Whether `pid` runs (a zombie nobody reaped does not).
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
    !matches!(
        state.and_then(|s| s.chars().next()),
        Some('Z') | Some('X') | None
    )
}

/// Kills, by pid, the programs deploy.sh started, should the test fail
/// before `deploy.sh stop` did.
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            if alive(*pid) {
                // SAFETY: kill(2) on a pid this test started.
                unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
            }
        }
    }
}

/// Waits (briefly) for `pid` to end.
fn ended(pid: u32) -> bool {
    for _ in 0..200 {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

/// A sweep of one short run on `hosts`; returns the pids it saw start.
fn one_run(hosts: &str, csv: PathBuf) -> Vec<u32> {
    let pids = Arc::new(Mutex::new(Vec::new()));
    let seen = pids.clone();
    let outcome = Sweep::new(csv)
        .programs(bin_dir())
        .hosts(Hosts::parse(hosts).unwrap())
        .sink(Box::new(move |e| {
            if let Event::ProgramUp { pid: Some(pid), .. } = e {
                seen.lock().unwrap().push(pid);
            }
        }))
        .run(vec![Bench::new("unreplicated", 4).seconds(1.2)])
        .unwrap();
    assert_eq!(outcome.finished, 1, "{:?}", outcome.rows);
    assert!(outcome.rows[0].ops_per_s > 0.0);
    let pids = pids.lock().unwrap().clone();
    pids
}

#[test]
fn sweeps_start_programs_over_ssh_or_use_those_deploy_sh_started() {
    let scratch = std::env::temp_dir().join(format!("troupe-ssh-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let fake = scratch.join("fake");
    let remote = scratch.join("remote");
    std::fs::create_dir_all(&fake).unwrap();
    std::fs::create_dir_all(&remote).unwrap();
    // The "remote" directory holds the binaries, as `deploy.sh copy` leaves it.
    for binary in ["replica", "bench_client"] {
        std::os::unix::fs::symlink(bin_dir().join(binary), remote.join(binary)).unwrap();
    }
    // ssh [-o OPTION]... TARGET [--] COMMAND...: run COMMAND here.
    std::fs::write(
        fake.join("ssh"),
        "#!/usr/bin/env bash\n\
         while [ \"$1\" = -o ]; do shift 2; done\n\
         shift\n\
         [ \"$1\" = -- ] && shift\n\
         cd \"$HOME\" && exec bash -c \"$*\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(fake.join("ssh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap());
    // The only test in this binary sets these before it starts any thread.
    std::env::set_var("PATH", &path);
    std::env::set_var("TROUPE_REMOTE_DIR", &remote);

    let hosts = "replicas 127.0.0.2 ssh alice@node2\nclients 127.0.0.3 ssh carol@node3\n";

    // The sweep starts the programs over ssh and stops them at the end.
    let pids = one_run(hosts, scratch.join("ssh.csv"));
    assert_eq!(pids.len(), 2);
    for pid in pids {
        assert!(ended(pid), "program {pid} outlived the sweep");
    }

    // deploy.sh starts them by hand; a sweep uses them and leaves them
    // running; deploy.sh stops them.
    let hosts_file = scratch.join("hosts");
    std::fs::write(&hosts_file, hosts).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/deploy.sh");
    let token = "a-token-for-this-test";
    let start = Command::new("bash")
        .arg(&script)
        .args(["start".as_ref(), hosts_file.as_os_str()])
        .env("TROUPE_TOKEN", token)
        .output()
        .unwrap();
    assert!(
        start.status.success(),
        "{}",
        String::from_utf8_lossy(&start.stderr)
    );
    let running = String::from_utf8(start.stdout).unwrap();
    assert!(running.contains("replicas 127.0.0.2 running"), "{running}");
    let pid_of = |name: &str| -> u32 {
        let file = remote.join(name);
        for _ in 0..200 {
            if let Ok(text) = std::fs::read_to_string(&file) {
                if let Ok(pid) = text.trim().parse() {
                    return pid;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("no {}", file.display());
    };
    let started = [pid_of("replica-7000.pid"), pid_of("bench_client-7100.pid")];
    let _guard = KillOnDrop(started.to_vec());
    std::env::set_var("TROUPE_TOKEN", token);
    let seen = one_run(&running, scratch.join("running.csv"));
    assert!(seen.is_empty(), "the sweep started nothing itself");
    for pid in started {
        assert!(alive(pid), "a program started by hand outlives the sweep");
    }
    let stop = Command::new("bash")
        .arg(&script)
        .args(["stop".as_ref(), hosts_file.as_os_str()])
        .status()
        .unwrap();
    assert!(stop.success());
    for pid in started {
        assert!(ended(pid), "deploy.sh stop left {pid} running");
    }
    let _ = std::fs::remove_dir_all(&scratch);
}
