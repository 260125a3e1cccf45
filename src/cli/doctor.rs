//! `appliance doctor [--quarantine]`: the stored rows that are damaged (skipped while
//! serving), and moving them into the quarantine table, their bytes kept.

use appliance::control::Request;
use appliance::model::Actor;
use appliance::paths::DataDir;
use appliance::service::unix_now_ms;

use super::{call, fatal, to_value, Failure};

pub fn run(dir: &DataDir, json: bool, quarantine: bool) -> Result<(), Failure> {
    let req = Request::Doctor { quarantine };
    let v = call(dir, req, move |store, _| {
        Ok(to_value(&store.doctor(
            quarantine,
            &Actor::local_cli(),
            unix_now_ms(),
        )?))
    })?;
    let report: appliance::store::DoctorReport = serde_json::from_value(v).map_err(fatal)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap());
    } else if report.damaged.is_empty() {
        println!(
            "no damaged rows ({} kept in quarantine)",
            report.in_quarantine
        );
    } else {
        let verb = if report.quarantined {
            "moved into quarantine"
        } else {
            "damaged"
        };
        println!("{} row(s) {verb}:", report.damaged.len());
        for d in &report.damaged {
            println!("  {d}");
        }
        println!("{} row(s) kept in quarantine", report.in_quarantine);
    }
    if !report.quarantined && !report.damaged.is_empty() {
        return Err(fatal(format!(
            "{} damaged row(s) are skipped while serving; run `appliance doctor --quarantine` to move them aside (their bytes are kept)",
            report.damaged.len()
        )));
    }
    Ok(())
}
