//! The Deno side's own tests (`functions/host_test.ts`: the host script and
//! the sample functions), run with the real Deno.

use std::path::Path;

#[tokio::test]
async fn the_host_scripts_own_deno_tests_pass() {
    let Some(deno) = super::deno() else { return };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = tokio::process::Command::new(deno)
        .args([
            "test",
            "--no-config",
            "--allow-read",
            "--allow-write",
            "--allow-run",
            "--allow-env",
            "--allow-net",
            "functions/host_test.ts",
        ])
        .current_dir(&root)
        .env("NO_COLOR", "1")
        .env("DENO_NO_UPDATE_CHECK", "1")
        .output()
        .await
        .expect("run deno test");
    assert!(
        out.status.success(),
        "deno test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
