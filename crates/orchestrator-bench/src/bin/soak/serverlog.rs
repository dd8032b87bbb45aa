//! The server's warnings and errors over the run, from its JSON log: each
//! distinct message with its level and how often it came, most frequent
//! first. A line that is not JSON (a panic, say) counts under its own text.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

/// Distinct messages printed at the most.
const SHOWN: usize = 12;

pub fn print_summary(log: &Path) {
    let text = match std::fs::read_to_string(log) {
        Ok(text) => text,
        Err(err) => {
            println!("server log {}: not readable: {err}", log.display());
            return;
        }
    };
    let counts = count(&text);
    let lines: usize = counts.values().sum();
    println!(
        "server log: {lines} lines, {} distinct ({})",
        counts.len(),
        log.display()
    );
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for ((level, message), n) in counts.iter().take(SHOWN) {
        println!("  {n:>7} {level:<5} {message}");
    }
    if counts.len() > SHOWN {
        println!("  … and {} more distinct lines", counts.len() - SHOWN);
    }
}

/// (level, message) → lines.
fn count(text: &str) -> HashMap<(String, String), usize> {
    let mut counts = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        *counts.entry(key(line)).or_default() += 1;
    }
    counts
}

fn key(line: &str) -> (String, String) {
    let Ok(Value::Object(event)) = serde_json::from_str::<Value>(line) else {
        let text: String = line.chars().take(160).collect();
        return ("-".into(), text);
    };
    let field = |name: &str| event.get(name).and_then(Value::as_str).unwrap_or("").to_owned();
    (field("level"), field("message"))
}
