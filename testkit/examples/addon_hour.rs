//! Writes one hour of a 20-node cluster's add-on audit traffic, attacks
//! included, as JSON lines (one `EventList` item per line), and prints the
//! mix (events per component, per identity and verb) to stderr.
//!
//! ```text
//! cargo run -p driftwatch-testkit --example addon_hour -- [OUT.jsonl] [SEED]
//! ```
//! Without OUT (or with `-`) the lines go to stdout.

use std::io::{BufWriter, Write};

use driftwatch_testkit::addons::{self, AddonMix};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = args.next().unwrap_or_else(|| "-".to_owned());
    let seed = match args.next() {
        Some(s) => s.parse()?,
        None => driftwatch_testkit::synth::DEFAULT_SEED,
    };
    let events = addons::hour(seed);
    let sink: Box<dyn Write> = if out == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(&out)?)
    };
    let mut w = BufWriter::new(sink);
    for e in &events {
        writeln!(w, "{}", e.json)?;
    }
    w.flush()?;
    eprintln!("seed {seed}");
    eprint!("{}", AddonMix::of(&events).report());
    Ok(())
}
