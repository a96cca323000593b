//! The recorder: cheap in-memory accumulation on the hot paths (one mutex'd map update, no
//! I/O), flushed to the Store about once a second by a background thread and on
//! drop/shutdown, so a crash loses at most about a second of usage.
//!
//! Storage: one document per minute in `usage.minutes` (key = minute start, epoch ms,
//! zero-padded so key order is time order); minutes of hours that ended more than an hour
//! ago are rolled up into one document per hour in `usage.hours`.
use crate::UsageError;
use crate::record::{
    Bucket, FunctionAgg, InvocationRecord, RouteAgg, ServiceAgg, TaskUsageRecord, UsageReport,
};
use nimbus_store::Store;
use parking_lot::{Condvar, Mutex};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

pub const MINUTES: &str = "usage.minutes";
pub const HOURS: &str = "usage.hours";
const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 3_600_000;
/// Tasks whose running time is tallied before stale ones are pruned.
const MAX_TASKS_TRACKED: usize = 4096;

/// Durable usage accounting. Cheap to clone; the last clone dropped flushes.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    state: Mutex<State>,
    /// Held while pending deltas are between memory and the Store, and by queries, so a
    /// query never sees a delta in neither place.
    flushing: Mutex<()>,
    wake: Arc<(Mutex<bool>, Condvar)>,
}

#[derive(Default)]
struct State {
    /// Not yet flushed deltas by minute start.
    pending: BTreeMap<u64, Bucket>,
    /// Per function: end times (µs) of invocations that may still overlap later ones, and
    /// the end of the latest busy stretch — for concurrency and busy time.
    live: HashMap<String, Live>,
    /// Per task: running time so far (for "runs > 15 min") and when it last reported.
    task_runtime: HashMap<String, (u64, u64)>,
    last_rollup_ms: u64,
}

#[derive(Default)]
struct Live {
    ends_us: BinaryHeap<Reverse<u64>>,
    busy_until_us: u64,
}

fn minute_of(ms: u64) -> u64 {
    ms - ms % MINUTE_MS
}

fn key(ms: u64) -> String {
    format!("{ms:015}")
}

fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis().max(0) as u64
}

impl Recorder {
    /// A recorder over `store` with a flusher thread (every `interval`).
    pub fn open(store: Arc<dyn Store>, interval: Duration) -> Recorder {
        let inner = Arc::new(Inner {
            store,
            state: Mutex::new(State::default()),
            flushing: Mutex::new(()),
            wake: Arc::new((Mutex::new(false), Condvar::new())),
        });
        let weak = Arc::downgrade(&inner);
        let wake = inner.wake.clone();
        let spawned = std::thread::Builder::new()
            .name("usage-flush".into())
            .spawn(move || flusher(weak, wake, interval));
        if let Err(e) = spawned {
            tracing::warn!("usage flusher thread did not start ({e}); usage is flushed only on shutdown");
        }
        Recorder { inner }
    }

    /// Accounts one finished invocation.
    pub fn record_invocation(&self, r: InvocationRecord) {
        let end_us = r.at_ms.saturating_mul(1000);
        let start_us = end_us.saturating_sub((r.duration_ms.max(0.0) * 1000.0) as u64);
        let mut st = self.inner.state.lock();
        // Invocations arrive in (nearly) end order: an end heap holds the ones still
        // overlapping; its size after adding this one is the concurrency it saw.
        let live = st.live.entry(r.function_arn.clone()).or_default();
        while live.ends_us.peek().is_some_and(|Reverse(e)| *e <= start_us) {
            live.ends_us.pop();
        }
        live.ends_us.push(Reverse(end_us));
        let concurrency = live.ends_us.len() as u32;
        let busy_us = end_us.saturating_sub(start_us.max(live.busy_until_us));
        live.busy_until_us = live.busy_until_us.max(end_us);
        let start_ms = start_us / 1000;
        let bucket = st.pending.entry(minute_of(r.at_ms)).or_default();
        let a = bucket
            .functions
            .entry(r.function_arn.clone())
            .or_insert_with(|| FunctionAgg { first_ms: start_ms, ..FunctionAgg::default() });
        a.function_arn = r.function_arn;
        a.function_name = r.function_name;
        a.account = r.account;
        a.region = r.region;
        a.memory_mb = r.memory_mb;
        a.max_memory_mb = a.max_memory_mb.max(r.memory_mb);
        a.architecture = r.architecture;
        a.invocations += 1;
        a.errors += r.error as u64;
        a.billed_ms += r.billed_ms;
        a.mb_ms += r.billed_ms * r.memory_mb as u64;
        a.duration_ms += r.duration_ms;
        a.max_duration_ms = a.max_duration_ms.max(r.duration_ms);
        if r.cold {
            a.cold_starts += 1;
        }
        a.init_ms += r.init_ms.unwrap_or(0.0);
        a.busy_ms += busy_us as f64 / 1000.0;
        a.peak_concurrency = a.peak_concurrency.max(concurrency);
        a.first_ms = a.first_ms.min(start_ms);
        a.last_ms = a.last_ms.max(r.at_ms);
    }

    /// Accounts one period of an ECS task's life.
    pub fn record_task_usage(&self, r: TaskUsageRecord) {
        let name = match &r.service {
            Some(s) => format!("{}/{s}", r.cluster),
            None => format!("{}/{}", r.cluster, r.family),
        };
        let mut st = self.inner.state.lock();
        if st.task_runtime.len() >= MAX_TASKS_TRACKED {
            // Tasks that have not reported for an hour have stopped.
            let cutoff = r.at_ms.saturating_sub(HOUR_MS);
            st.task_runtime.retain(|_, (_, seen)| *seen >= cutoff);
        }
        let total = {
            let t = st.task_runtime.entry(r.task_arn.clone()).or_default();
            t.0 += r.running_ms;
            t.1 = r.at_ms;
            t.0
        };
        let bucket = st.pending.entry(minute_of(r.at_ms)).or_default();
        let delta = ServiceAgg {
            cluster: r.cluster,
            service: r.service,
            family: r.family,
            launch_type: r.launch_type,
            cpu_units: r.cpu_units,
            memory_mb: r.memory_mb,
            architecture: r.architecture,
            gpu: r.gpu,
            running_ms: r.running_ms,
            cpu_ms: r.cpu_ms,
            peak_memory_bytes: r.peak_memory_bytes,
            peak_tasks: 1,
            tasks: vec![r.task_arn],
            longest_task_ms: total,
            first_ms: r.at_ms.saturating_sub(r.running_ms),
            last_ms: r.at_ms,
        };
        bucket.services.entry(name).or_default().merge(&delta, true);
    }

    /// Forgets the running-time tally of a stopped task.
    pub fn task_stopped(&self, task_arn: &str) {
        self.inner.state.lock().task_runtime.remove(task_arn);
    }

    /// Counts one API Gateway request by route.
    pub fn record_request(&self, api_id: &str, route: &str, at_ms: u64) {
        let mut st = self.inner.state.lock();
        let bucket = st.pending.entry(minute_of(at_ms)).or_default();
        let k = format!("{api_id} {route}");
        match bucket.routes.get_mut(&k) {
            Some(r) => {
                r.requests += 1;
                r.last_ms = r.last_ms.max(at_ms);
                r.first_ms = r.first_ms.min(at_ms);
            }
            None => {
                bucket.routes.insert(
                    k,
                    RouteAgg {
                        api_id: api_id.to_string(),
                        route_key: route.to_string(),
                        requests: 1,
                        first_ms: at_ms,
                        last_ms: at_ms,
                    },
                );
            }
        }
    }

    /// Writes pending usage to the Store now (and rolls up old minutes).
    pub fn flush(&self) -> Result<(), UsageError> {
        self.inner.flush(now_ms())
    }

    /// Usage in `[from_ms, to_ms)`: every bucket overlapping the window (minute buckets for
    /// the recent past, hour buckets after roll-up), plus what is not flushed yet. The
    /// window starts no earlier than the first recorded activity in it.
    pub fn usage(&self, from_ms: u64, to_ms: u64) -> Result<UsageReport, UsageError> {
        let _g = self.inner.flushing.lock();
        let mut merged = Bucket::default();
        let overlaps = |start: u64, len: u64| start < to_ms && start + len > from_ms;
        for (collection, len) in [(HOURS, HOUR_MS), (MINUTES, MINUTE_MS)] {
            for (k, v) in self.inner.store.list(collection)? {
                let Ok(start) = k.parse::<u64>() else { continue };
                if !overlaps(start, len) {
                    continue;
                }
                let b: Bucket = serde_json::from_slice(&v)
                    .map_err(|e| UsageError::Corrupt(format!("{collection}/{k}: {e}")))?;
                merged.merge(&b, false);
            }
        }
        for (start, b) in self.inner.state.lock().pending.iter() {
            if overlaps(*start, MINUTE_MS) {
                merged.merge(b, false);
            }
        }
        let first = merged
            .functions
            .values()
            .map(|f| f.first_ms)
            .chain(merged.services.values().map(|s| s.first_ms))
            .chain(merged.routes.values().map(|r| r.first_ms))
            .filter(|t| *t > 0)
            .min();
        let from = match first {
            Some(f) => from_ms.max(f.min(to_ms)),
            None => from_ms,
        };
        Ok(UsageReport::from_bucket(&merged, from, to_ms))
    }
}

impl Inner {
    fn flush(&self, now: u64) -> Result<(), UsageError> {
        let _g = self.flushing.lock();
        let taken = std::mem::take(&mut self.state.lock().pending);
        let mut failed: Option<UsageError> = None;
        let mut unwritten = BTreeMap::new();
        for (minute, delta) in taken {
            if failed.is_some() {
                unwritten.insert(minute, delta);
                continue;
            }
            if let Err(e) = self.write_minute(minute, &delta) {
                failed = Some(e);
                unwritten.insert(minute, delta);
            }
        }
        if !unwritten.is_empty() {
            // Keep what could not be written for the next flush.
            let mut st = self.state.lock();
            for (minute, delta) in unwritten {
                st.pending.entry(minute).or_default().merge(&delta, true);
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        let due = {
            let mut st = self.state.lock();
            let due = now.saturating_sub(st.last_rollup_ms) >= MINUTE_MS;
            if due {
                st.last_rollup_ms = now;
            }
            due
        };
        if due {
            self.roll_up(now)?;
        }
        Ok(())
    }

    fn write_minute(&self, minute: u64, delta: &Bucket) -> Result<(), UsageError> {
        let k = key(minute);
        let mut doc = match self.store.get(MINUTES, &k)? {
            Some(v) => serde_json::from_slice::<Bucket>(&v)
                .map_err(|e| UsageError::Corrupt(format!("{MINUTES}/{k}: {e}")))?,
            None => Bucket::default(),
        };
        doc.merge(delta, true);
        let bytes = serde_json::to_vec(&doc).map_err(|e| UsageError::Corrupt(e.to_string()))?;
        self.store.put(MINUTES, &k, &bytes)?;
        Ok(())
    }

    /// Folds the minutes of every hour that ended more than an hour before `now` into
    /// that hour's document.
    fn roll_up(&self, now: u64) -> Result<(), UsageError> {
        let cutoff = (now - now % HOUR_MS).saturating_sub(HOUR_MS);
        let mut by_hour: BTreeMap<u64, Vec<(u64, Bucket)>> = BTreeMap::new();
        for (k, v) in self.store.list(MINUTES)? {
            let Ok(start) = k.parse::<u64>() else { continue };
            if start >= cutoff {
                break; // keys are in time order
            }
            let b: Bucket =
                serde_json::from_slice(&v).map_err(|e| UsageError::Corrupt(format!("{MINUTES}/{k}: {e}")))?;
            by_hour.entry(start - start % HOUR_MS).or_default().push((start, b));
        }
        for (hour, minutes) in by_hour {
            let hk = key(hour);
            let mut doc = match self.store.get(HOURS, &hk)? {
                Some(v) => serde_json::from_slice::<Bucket>(&v)
                    .map_err(|e| UsageError::Corrupt(format!("{HOURS}/{hk}: {e}")))?,
                None => Bucket::default(),
            };
            for (start, b) in &minutes {
                if !doc.absorbed.contains(start) {
                    doc.merge(b, false);
                    doc.absorbed.push(*start);
                }
            }
            let bytes = serde_json::to_vec(&doc).map_err(|e| UsageError::Corrupt(e.to_string()))?;
            self.store.put(HOURS, &hk, &bytes)?;
            for (start, _) in &minutes {
                self.store.delete(MINUTES, &key(*start))?;
            }
        }
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        {
            let (stop, cv) = &*self.wake;
            *stop.lock() = true;
            cv.notify_all();
        }
        if let Err(e) = self.flush(now_ms()) {
            tracing::warn!("usage: final flush failed: {e}");
        }
    }
}

fn flusher(inner: Weak<Inner>, wake: Arc<(Mutex<bool>, Condvar)>, interval: Duration) {
    loop {
        {
            let (stop, cv) = &*wake;
            let mut stopped = stop.lock();
            if !*stopped {
                cv.wait_for(&mut stopped, interval);
            }
            if *stopped {
                return;
            }
        }
        let Some(inner) = inner.upgrade() else { return };
        if let Err(e) = inner.flush(now_ms()) {
            tracing::warn!("usage: flush failed (will retry): {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_store::SqliteStore;

    fn inv(name: &str, at_ms: u64, duration_ms: f64, memory_mb: u32) -> InvocationRecord {
        InvocationRecord {
            function_arn: format!("arn:aws:lambda:us-east-1:000000000000:function:{name}"),
            function_name: name.into(),
            account: "000000000000".into(),
            region: "us-east-1".into(),
            memory_mb,
            architecture: "x86_64".into(),
            billed_ms: (duration_ms.ceil() as u64).max(1),
            duration_ms,
            init_ms: None,
            cold: false,
            error: false,
            at_ms,
        }
    }

    fn open(dir: &std::path::Path) -> (Arc<dyn Store>, Recorder) {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("s.db")).unwrap());
        let r = Recorder::open(store.clone(), Duration::from_secs(3600));
        (store, r)
    }

    #[test]
    fn counts_gb_seconds_concurrency_and_busy_time() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, r) = open(dir.path());
        let t0 = 1_800_000_000_000u64;
        // A: [t0, t0+100), B: [t0+50, t0+150) overlap; C: [t0+1000, t0+1010).
        r.record_invocation(inv("f", t0 + 100, 100.0, 128));
        r.record_invocation(inv("f", t0 + 150, 100.0, 128));
        let mut c = inv("f", t0 + 1010, 9.2, 256);
        c.cold = true;
        c.init_ms = Some(120.0);
        r.record_invocation(c);
        let rep = r.usage(t0, t0 + 60_000).unwrap();
        assert_eq!(rep.functions.len(), 1);
        let f = &rep.functions[0];
        assert_eq!(f.invocations, 3);
        assert_eq!(f.billed_ms, 100 + 100 + 10);
        // (100 + 100) ms × 128 MB + 10 ms × 256 MB
        let expect = (200.0 * 128.0 + 10.0 * 256.0) / 1024.0 / 1000.0;
        assert!((f.gb_seconds - expect).abs() < 1e-12, "{}", f.gb_seconds);
        assert_eq!(f.peak_concurrency, 2);
        assert!((f.busy_ms - (150.0 + 9.2)).abs() < 0.01, "{}", f.busy_ms);
        assert_eq!(f.cold_starts, 1);
        assert_eq!(f.init_ms, 120.0);
        assert_eq!(f.memory_mb, 256);
        assert_eq!(rep.window_ms, 60_000);
        assert!((f.idle_fraction - (1.0 - 159.2 / 60_000.0)).abs() < 1e-9);
    }

    #[test]
    fn flushed_usage_survives_a_new_recorder_and_merges_per_minute() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_800_000_000_000u64;
        {
            let (_s, r) = open(dir.path());
            r.record_invocation(inv("f", t0 + 10, 5.0, 512));
            r.flush().unwrap();
            r.record_invocation(inv("f", t0 + 20, 5.0, 512));
            r.record_request("api1", "GET /items", t0 + 30);
            r.record_request("api1", "GET /items", t0 + 31);
            // dropped: the final flush writes the rest
        }
        let (s, r) = open(dir.path());
        assert_eq!(s.list(MINUTES).unwrap().len(), 1);
        let rep = r.usage(0, t0 + 3_600_000).unwrap();
        assert_eq!(rep.functions[0].invocations, 2);
        assert_eq!(rep.functions[0].billed_ms, 10);
        assert_eq!(
            rep.routes,
            vec![crate::RouteUsage { api_id: "api1".into(), route_key: "GET /items".into(), requests: 2 }]
        );
        // The window starts at the first activity, not at the epoch.
        assert_eq!(rep.from_ms, t0 + 5);
    }

    #[test]
    fn minutes_roll_up_into_hours_once() {
        let dir = tempfile::tempdir().unwrap();
        let (s, r) = open(dir.path());
        let h0 = 1_800_000_000_000u64 - 1_800_000_000_000u64 % HOUR_MS;
        for m in 0..3 {
            r.record_invocation(inv("f", h0 + m * MINUTE_MS + 5, 10.0, 1024));
        }
        r.record_invocation(inv("f", h0 + HOUR_MS + 5, 10.0, 1024));
        r.inner.flush(h0 + 30 * MINUTE_MS).unwrap();
        assert_eq!(s.list(MINUTES).unwrap().len(), 4);
        assert!(s.list(HOURS).unwrap().is_empty());
        let before = s.get(MINUTES, &key(h0)).unwrap().unwrap();
        // Two hours later the first hour is folded; the second too (it ended > 1 h ago).
        r.inner.flush(h0 + 3 * HOUR_MS + 5).unwrap();
        assert_eq!(s.list(MINUTES).unwrap().len(), 0);
        assert_eq!(s.list(HOURS).unwrap().len(), 2);
        // A crash between writing an hour and deleting its minutes leaves an absorbed
        // minute behind: rolling it up again must not count it twice.
        s.put(MINUTES, &key(h0), &before).unwrap();
        r.inner.state.lock().last_rollup_ms = 0;
        r.inner.flush(h0 + 3 * HOUR_MS + 10 * MINUTE_MS).unwrap();
        assert_eq!(s.list(MINUTES).unwrap().len(), 0);
        let rep = r.usage(0, h0 + 4 * HOUR_MS).unwrap();
        assert_eq!(rep.functions[0].invocations, 4);
        let rep = r.usage(h0, h0 + HOUR_MS).unwrap();
        assert_eq!(rep.functions[0].invocations, 3);
    }

    #[test]
    fn task_usage_per_service() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, r) = open(dir.path());
        let t0 = 1_800_000_000_000u64;
        for (i, task) in ["t1", "t2"].iter().enumerate() {
            for p in 0..3u64 {
                r.record_task_usage(TaskUsageRecord {
                    cluster: "default".into(),
                    service: Some("web".into()),
                    task_arn: task.to_string(),
                    family: "web".into(),
                    launch_type: "FARGATE".into(),
                    cpu_units: 1024,
                    memory_mb: 2048,
                    architecture: "x86_64".into(),
                    gpu: 0,
                    running_ms: 10_000,
                    cpu_ms: 7_000,
                    peak_memory_bytes: (100 + i as u64) << 20,
                    at_ms: t0 + (p + 1) * 10_000,
                });
            }
        }
        let rep = r.usage(t0, t0 + 60_000).unwrap();
        let s = &rep.services[0];
        assert_eq!(s.name, "default/web");
        assert_eq!(s.running_ms, 60_000);
        assert!((s.cpu_utilization - 0.7).abs() < 1e-9);
        assert_eq!(s.peak_tasks, 2);
        assert_eq!(s.longest_task_ms, 30_000);
        assert_eq!(s.peak_memory_bytes, 101 << 20);
        assert!((s.avg_tasks - 1.0).abs() < 1e-9);
    }

    /// Routes fronting services credit their requests to them; a route over a target group
    /// two services register in splits; routes in front of nothing (Lambda) credit no one.
    #[test]
    fn gateway_requests_are_credited_to_the_services_behind_their_routes() {
        struct Routing;
        impl crate::RequestRouting for Routing {
            fn services_behind(&self, api_id: &str, route_key: &str) -> Vec<String> {
                match (api_id, route_key) {
                    ("a1", "GET /web") => vec!["default/web".into()],
                    ("a1", "ANY /both") => vec!["default/web".into(), "default/api".into()],
                    _ => vec![],
                }
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let (_s, r) = open(dir.path());
        let t0 = 1_800_000_000_000u64;
        for svc in ["web", "api", "idle"] {
            r.record_task_usage(TaskUsageRecord {
                cluster: "default".into(),
                service: Some(svc.into()),
                task_arn: format!("arn:aws:ecs:us-east-1:000000000000:task/default/{svc}"),
                family: svc.into(),
                launch_type: "FARGATE".into(),
                cpu_units: 256,
                memory_mb: 512,
                architecture: "x86_64".into(),
                gpu: 0,
                running_ms: 10_000,
                cpu_ms: 1_000,
                peak_memory_bytes: 1 << 20,
                at_ms: t0 + 10_000,
            });
        }
        for i in 0..5 {
            r.record_request("a1", "GET /web", t0 + i);
        }
        for i in 0..3 {
            r.record_request("a1", "ANY /both", t0 + i);
        }
        r.record_request("a1", "GET /fn", t0);
        let acc = crate::Accounting::new(r, Arc::new(crate::PriceTable::default_table()));
        let requests = |acc: &crate::Accounting| -> Vec<(String, u64)> {
            let rep = acc.report(t0, t0 + 60_000).unwrap();
            rep.services.iter().map(|s| (s.name.clone(), s.requests)).collect()
        };
        assert_eq!(
            requests(&acc),
            vec![("default/api".into(), 0), ("default/idle".into(), 0), ("default/web".into(), 0)],
            "no join before the binary installs one"
        );
        acc.set_routing(Arc::new(Routing));
        // web: 5 + (3 split between api and web: 2 to the first by name, "default/api")
        assert_eq!(
            requests(&acc),
            vec![("default/api".into(), 2), ("default/idle".into(), 0), ("default/web".into(), 5 + 1)]
        );
    }
}
