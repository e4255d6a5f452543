//! Running `cargo test` and adding up its results into one closing line.

use anyhow::{Context, Result};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub success: bool,
}

/// Runs `command` (a `cargo test`), echoing its output, and sums the `test result:` lines.
pub fn run(command: &mut Command) -> Result<Summary> {
    let mut child = command.stdout(Stdio::piped()).spawn().context("running cargo test")?;
    let (mut passed, mut failed) = (0, 0);
    for line in BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            passed += count(rest, " passed");
            failed += count(rest, " failed");
        }
    }
    let success = child.wait()?.success();
    Ok(Summary { passed, failed, success })
}

/// The number before `label` in a line like `ok. 3 passed; 0 failed; …`.
fn count(text: &str, label: &str) -> usize {
    text.split(';')
        .find_map(|part| {
            part.trim().trim_start_matches("ok. ").trim_start_matches("FAILED. ").strip_suffix(label)
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_passed_and_failed() {
        let line = "ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s";
        assert_eq!(count(line, " passed"), 12);
        assert_eq!(count(line, " failed"), 0);
        assert_eq!(count("FAILED. 3 passed; 2 failed; 0 ignored", " failed"), 2);
    }
}
