//! Alert shaping: the finding stream cut down to what should page someone.
//! Per drift, one alert when it opens, its later changes folded for a
//! window into one update, one alert when it closes; a finding outside any
//! drift is alerted as it comes.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use crate::decode::Stage;
use crate::model::{ChangeRecord, DriftClosed, DriftState, FindingType, ObjectRef, Severity, Time};

use super::{Batch, Finding};

/// Which stream a sink writes: every finding, or the shaped alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stream {
    #[default]
    Findings,
    Alerts,
}

impl Stream {
    pub const ALL: [Stream; 2] = [Stream::Findings, Stream::Alerts];

    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Findings => "findings",
            Stream::Alerts => "alerts",
        }
    }

    pub fn parse(s: &str) -> Option<Stream> {
        Stream::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    /// The finding that opened a drift.
    Opened,
    /// Later changes to an open drift, folded over the window.
    Updated,
    /// The drift was reconciled or accepted.
    Closed,
    /// A finding outside any drift (interactive access, a risky pipeline
    /// change...): alerted as it comes.
    Single,
}

impl AlertKind {
    pub const ALL: [AlertKind; 4] = [
        AlertKind::Opened,
        AlertKind::Updated,
        AlertKind::Closed,
        AlertKind::Single,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Opened => "opened",
            AlertKind::Updated => "updated",
            AlertKind::Closed => "closed",
            AlertKind::Single => "single",
        }
    }
}

/// One alert: what a pager or a SIEM case sees.
#[derive(Debug, Clone)]
pub struct Alert {
    pub kind: AlertKind,
    pub drift_id: Option<String>,
    pub cluster: String,
    pub object: ObjectRef,
    pub state: Option<DriftState>,
    /// The highest severity of the findings in the alert; for `Closed`, the
    /// highest this shaper saw in the drift (`low` when it saw none, as
    /// after a restart).
    pub severity: Severity,
    /// The opening finding (`Opened`, `Single`) or the latest one
    /// (`Updated`); `None` for `Closed`.
    pub finding: Option<OwnedFinding>,
    /// How many findings the alert stands for (0 for `Closed`).
    pub folded: usize,
    /// The union of the changed field paths, sorted.
    pub paths: Vec<String>,
    /// The first and last finding's times; for `Closed`, the drift's open
    /// and close times.
    pub first: Time,
    pub last: Time,
    pub closed: Option<DriftClosed>,
}

/// A finding that outlives its batch: held while folded.
#[derive(Debug, Clone)]
pub struct OwnedFinding {
    pub record: ChangeRecord,
    pub finding_type: FindingType,
    pub severity: Severity,
    pub stage: Stage,
}

impl OwnedFinding {
    pub fn of(f: &Finding<'_>) -> Self {
        OwnedFinding {
            record: f.record.clone(),
            finding_type: f.finding_type,
            severity: f.severity,
            stage: f.stage,
        }
    }

    pub fn view(&self) -> Finding<'_> {
        Finding {
            record: &self.record,
            finding_type: self.finding_type,
            severity: self.severity,
            stage: self.stage,
        }
    }
}

/// Paths kept per alert: past this the list is cut, not the memory grown
/// (the same bound a drift's verified fields have).
const MAX_PATHS: usize = crate::model::MAX_DRIFTED_PATHS;

/// An update being folded.
#[derive(Debug)]
struct Pending {
    count: usize,
    paths: BTreeSet<String>,
    severity: Severity,
    latest: OwnedFinding,
    first: Time,
    /// When it goes out (monotonic in the shaper's clock, `now.us`).
    due_us: i64,
}

/// What the shaper knows of one drift it has seen.
#[derive(Debug)]
struct Thread {
    /// The highest severity already alerted: a finding that rises past it
    /// to critical is not held back.
    alerted: Severity,
    /// The highest severity seen, for the `Closed` alert.
    seen: Severity,
    pending: Option<Pending>,
    /// Last touched, for the bound: the least recent thread goes first.
    touched: u64,
}

pub struct Shaper {
    fold_window: Duration,
    max_drifts: usize,
    threads: HashMap<String, Thread>,
    clock: u64,
}

impl Shaper {
    pub fn new(fold_window: Duration, max_drifts: usize) -> Shaper {
        Shaper {
            fold_window,
            max_drifts: max_drifts.max(1),
            threads: HashMap::new(),
            clock: 0,
        }
    }

    /// The alerts a batch gives at once; updates are held until [`due`].
    ///
    /// [`due`]: Shaper::due
    pub fn offer(&mut self, batch: &Batch<'_>, now: &Time) -> Vec<Alert> {
        let mut out = Vec::new();
        for f in batch.findings {
            self.finding(f, now, &mut out);
        }
        for c in batch.closed {
            self.close(c, &mut out);
        }
        out
    }

    /// The updates whose window ended by `now`, oldest first.
    pub fn due(&mut self, now: &Time) -> Vec<Alert> {
        let mut ids: Vec<(i64, String)> = self
            .threads
            .iter()
            .filter_map(|(id, t)| Some((t.pending.as_ref()?.due_us, id)))
            .filter(|(due, _)| *due <= now.us)
            .map(|(due, id)| (due, id.clone()))
            .collect();
        ids.sort();
        ids.into_iter()
            .filter_map(|(_, id)| self.flush(&id))
            .collect()
    }

    /// Every held update, oldest first (at shutdown: nothing is lost).
    pub fn drain(&mut self) -> Vec<Alert> {
        let out = self.due(&Time::from_us(i64::MAX));
        self.threads.clear();
        out
    }

    /// Drifts held (for tests and gauges).
    pub fn held(&self) -> usize {
        self.threads.len()
    }

    fn finding(&mut self, f: &Finding<'_>, now: &Time, out: &mut Vec<Alert>) {
        let Some(drift) = &f.record.drift else {
            out.push(alert_of(AlertKind::Single, f));
            return;
        };
        if drift.id == f.record.id {
            self.opened(f, out);
        } else {
            self.fold(f, &drift.id, now, out);
        }
    }

    fn opened(&mut self, f: &Finding<'_>, out: &mut Vec<Alert>) {
        let id = &f.record.id;
        // A redelivered opening finding after updates: those go out first,
        // so the file keeps the order things happened in.
        out.extend(self.flush(id));
        let thread = self.thread(id, out);
        thread.alerted = thread.alerted.max(f.severity);
        thread.seen = thread.seen.max(f.severity);
        out.push(alert_of(AlertKind::Opened, f));
    }

    fn fold(&mut self, f: &Finding<'_>, id: &str, now: &Time, out: &mut Vec<Alert>) {
        let due_us = now.us.saturating_add(micros(self.fold_window));
        let thread = self.thread(id, out);
        thread.seen = thread.seen.max(f.severity);
        let pending = thread.pending.get_or_insert_with(|| Pending {
            count: 0,
            paths: BTreeSet::new(),
            severity: f.severity,
            latest: OwnedFinding::of(f),
            first: f.record.time.clone(),
            due_us,
        });
        pending.count += 1;
        pending.severity = pending.severity.max(f.severity);
        for c in &f.record.changes {
            if pending.paths.len() < MAX_PATHS {
                pending.paths.insert(c.path.clone());
            }
        }
        pending.latest = OwnedFinding::of(f);
        // A privileged pod added during an edit loop must not wait out the
        // window: a rise to critical goes out now.
        if f.severity == Severity::Critical && thread.alerted < Severity::Critical {
            out.extend(self.flush(id));
        }
    }

    fn close(&mut self, c: &DriftClosed, out: &mut Vec<Alert>) {
        out.extend(self.flush(&c.id));
        let severity = self.threads.remove(&c.id).map_or(Severity::Low, |t| t.seen);
        let opened_us = c.at.us.saturating_sub((c.seconds * 1e6) as i64);
        out.push(Alert {
            kind: AlertKind::Closed,
            drift_id: Some(c.id.clone()),
            cluster: c.cluster.clone(),
            object: c.object.clone(),
            state: Some(c.state),
            severity,
            finding: None,
            folded: 0,
            paths: Vec::new(),
            first: Time::from_us(opened_us),
            last: c.at.clone(),
            closed: Some(c.clone()),
        });
    }

    /// The thread of `id`, made room for under the bound: the least
    /// recently touched thread goes, its pending update flushed into `out`.
    fn thread(&mut self, id: &str, out: &mut Vec<Alert>) -> &mut Thread {
        self.clock += 1;
        if !self.threads.contains_key(id) && self.threads.len() >= self.max_drifts {
            self.evict(out);
        }
        let clock = self.clock;
        let t = self.threads.entry(id.to_owned()).or_insert(Thread {
            alerted: Severity::Low,
            seen: Severity::Low,
            pending: None,
            touched: clock,
        });
        t.touched = clock;
        t
    }

    fn evict(&mut self, out: &mut Vec<Alert>) {
        // Prefer a thread with nothing held; else the oldest update goes
        // out early. Never dropped.
        let victim = self
            .threads
            .iter()
            .min_by_key(|(_, t)| {
                (
                    t.pending.is_some(),
                    t.pending.as_ref().map(|p| p.due_us),
                    t.touched,
                )
            })
            .map(|(id, _)| id.clone());
        if let Some(id) = victim {
            out.extend(self.flush(&id));
            self.threads.remove(&id);
        }
    }

    /// The pending update of `id` as an alert, if any.
    fn flush(&mut self, id: &str) -> Option<Alert> {
        let thread = self.threads.get_mut(id)?;
        let p = thread.pending.take()?;
        thread.alerted = thread.alerted.max(p.severity);
        let r = &p.latest.record;
        Some(Alert {
            kind: AlertKind::Updated,
            drift_id: Some(id.to_owned()),
            cluster: r.cluster.clone(),
            object: r.resource.clone(),
            state: r.drift.as_ref().and_then(|d| d.state),
            severity: p.severity,
            folded: p.count,
            paths: p.paths.into_iter().collect(),
            first: p.first,
            last: r.time.clone(),
            finding: Some(p.latest),
            closed: None,
        })
    }
}

impl Alert {
    /// A finding on its own as an alert (a chat sink on the findings stream
    /// gets the same readable text either way).
    pub fn single(f: &Finding<'_>) -> Alert {
        alert_of(AlertKind::Single, f)
    }
}

/// The alert of one finding on its own.
fn alert_of(kind: AlertKind, f: &Finding<'_>) -> Alert {
    let r = f.record;
    let mut paths: Vec<String> = r.changes.iter().map(|c| c.path.clone()).collect();
    paths.sort();
    paths.dedup();
    paths.truncate(MAX_PATHS);
    Alert {
        kind,
        drift_id: r.drift.as_ref().map(|d| d.id.clone()),
        cluster: r.cluster.clone(),
        object: r.resource.clone(),
        state: r.drift.as_ref().and_then(|d| d.state),
        severity: f.severity,
        finding: Some(OwnedFinding::of(f)),
        folded: 1,
        paths,
        first: r.time.clone(),
        last: r.time.clone(),
        closed: None,
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::testing::{DRIFT, at, change, exec, reconciled};

    const WINDOW: Duration = Duration::from_secs(300);

    fn offer(s: &mut Shaper, fs: &[OwnedFinding], closed: &[DriftClosed], now: i64) -> Vec<Alert> {
        let views: Vec<Finding<'_>> = fs.iter().map(OwnedFinding::view).collect();
        s.offer(
            &Batch {
                findings: &views,
                closed,
            },
            &at(now),
        )
    }

    fn kinds(alerts: &[Alert]) -> Vec<(AlertKind, usize)> {
        alerts.iter().map(|a| (a.kind, a.folded)).collect()
    }

    #[test]
    fn an_edit_loop_is_three_alerts() {
        let mut s = Shaper::new(WINDOW, 100);
        let mut out = Vec::new();
        for n in 0..20 {
            let path = format!("spec.template.spec.containers[name=app].env[{}]", n % 3);
            out.extend(offer(
                &mut s,
                &[change(n, &path, Severity::High)],
                &[],
                i64::from(n),
            ));
        }
        assert_eq!(kinds(&out), [(AlertKind::Opened, 1)], "updates are held");
        out.extend(offer(&mut s, &[], &[reconciled(30)], 30));
        assert_eq!(
            kinds(&out),
            [
                (AlertKind::Opened, 1),
                (AlertKind::Updated, 19),
                (AlertKind::Closed, 0)
            ]
        );
        let update = &out[1];
        assert_eq!(update.drift_id.as_deref(), Some(DRIFT));
        assert_eq!(update.paths.len(), 3, "the union of the paths");
        assert_eq!(update.first, at(1));
        assert_eq!(update.last, at(19));
        let latest = update.finding.as_ref().map(|f| f.record.id.as_str());
        assert_eq!(latest, Some("f-19"));
        let closed = &out[2];
        assert_eq!(closed.state, Some(DriftState::Reconciled));
        assert_eq!(closed.severity, Severity::High);
        assert_eq!(closed.first, at(0));
        assert!(closed.closed.is_some());
        assert_eq!(s.held(), 0, "a closed drift is forgotten");
    }

    #[test]
    fn the_window_ends_by_the_clock() {
        let mut s = Shaper::new(WINDOW, 100);
        offer(&mut s, &[change(0, "a", Severity::Medium)], &[], 0);
        offer(&mut s, &[change(1, "b", Severity::Medium)], &[], 10);
        offer(&mut s, &[change(2, "c", Severity::High)], &[], 100);
        assert!(s.due(&at(309)).is_empty(), "5m from the first folded one");
        let due = s.due(&at(310));
        assert_eq!(kinds(&due), [(AlertKind::Updated, 2)]);
        assert_eq!(due[0].severity, Severity::High, "the highest");
        assert!(s.due(&at(10_000)).is_empty(), "sent once");
        // A later change starts a new window.
        offer(&mut s, &[change(3, "d", Severity::Low)], &[], 400);
        assert_eq!(kinds(&s.drain()), [(AlertKind::Updated, 1)]);
    }

    #[test]
    fn a_rise_to_critical_goes_out_at_once() {
        let mut s = Shaper::new(WINDOW, 100);
        offer(&mut s, &[change(0, "a", Severity::High)], &[], 0);
        assert!(offer(&mut s, &[change(1, "b", Severity::High)], &[], 1).is_empty());
        let now = offer(
            &mut s,
            &[change(2, "privileged", Severity::Critical)],
            &[],
            2,
        );
        assert_eq!(kinds(&now), [(AlertKind::Updated, 2)]);
        assert_eq!(now[0].severity, Severity::Critical);
        // Already alerted as critical: the next critical change folds.
        assert!(offer(&mut s, &[change(3, "c", Severity::Critical)], &[], 3).is_empty());
        assert_eq!(kinds(&s.drain()), [(AlertKind::Updated, 1)]);
    }

    #[test]
    fn past_the_bound_the_oldest_update_goes_out_early() {
        let mut s = Shaper::new(WINDOW, 2);
        let mut flushed = Vec::new();
        for d in 0..3u32 {
            // Three drifts, each with one folded change.
            let mut f = change(d * 10 + 1, "a", Severity::Low);
            let id = format!("drift-{d}");
            f.record.drift = Some(crate::model::DriftRef {
                id: id.clone(),
                state: Some(DriftState::Open),
            });
            flushed.extend(offer(&mut s, &[f], &[], i64::from(d)));
        }
        assert_eq!(s.held(), 2);
        assert_eq!(kinds(&flushed), [(AlertKind::Updated, 1)]);
        assert_eq!(flushed[0].drift_id.as_deref(), Some("drift-0"));
        let rest: Vec<_> = s.drain().into_iter().map(|a| a.drift_id).collect();
        assert_eq!(rest, [Some("drift-1".into()), Some("drift-2".into())]);
    }

    #[test]
    fn a_finding_outside_a_drift_is_alerted_alone() {
        let mut s = Shaper::new(WINDOW, 100);
        let out = offer(&mut s, &[exec(), exec()], &[], 0);
        assert_eq!(
            kinds(&out),
            [(AlertKind::Single, 1), (AlertKind::Single, 1)]
        );
        assert_eq!(out[0].drift_id, None);
        assert_eq!(s.held(), 0);
    }

    #[test]
    fn spellings_round_trip() {
        for st in Stream::ALL {
            assert_eq!(Stream::parse(st.as_str()), Some(st));
        }
        assert_eq!(Stream::parse("nope"), None);
    }
}
