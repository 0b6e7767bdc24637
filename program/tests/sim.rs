//! The `sim` program: its summary lines and exit status.

use std::process::Command;

fn sim(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(args)
        .env_remove("TROUPE_SEED")
        .output()
        .expect("the sim program runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn seeded_runs_end_with_the_summary_line() {
    let (ok, out) = sim(&[
        "--protocol",
        "unreplicated",
        "--seeds",
        "20",
        "--faults",
        "drop,dup,reorder,delay,partition,crash,byzantine",
    ]);
    assert!(ok, "{out}");
    let last = out.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("protocol=unreplicated seeds=20 failed=0 events="),
        "{last}"
    );
    assert!(last.contains(" events_per_s="), "{last}");
}

#[test]
fn model_checking_ends_with_the_states_line() {
    let (ok, out) = sim(&[
        "--protocol",
        "unreplicated",
        "--model-check",
        "--depth",
        "6",
    ]);
    assert!(ok, "{out}");
    let last = out.lines().last().unwrap_or_default();
    assert!(last.starts_with("states="), "{last}");
    assert!(last.ends_with("max_depth=6 violations=0"), "{last}");
}

#[test]
fn unknown_protocols_and_fault_kinds_are_errors() {
    let (ok, _) = sim(&["--protocol", "nonesuch", "--seeds", "1"]);
    assert!(!ok);
    let (ok, _) = sim(&["--protocol", "unreplicated", "--faults", "gremlins"]);
    assert!(!ok);
}
