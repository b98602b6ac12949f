//! POG benchmarks: events written per second (single and batched), `why` and search latency
//! at 100k events, verify and backup time. Each figure has a baseline measured in the same
//! run on the same machine (raw SQLite doing the bare minimum). Run:
//! `cargo bench -p runloop-pog --bench pog_bench` (set `POG_BENCH_EVENTS` to change 100k).

use std::sync::Arc;
use std::time::{Duration, Instant};

use runloop_pog::{
    ActorName, EntityRef, EventKind, ManualClock, NewEvent, PogConfig, Provenance, Scope,
    SearchQuery, Store, backup, verify,
};
use serde_json::json;

const SINGLE_WRITES: usize = 300;
const BATCH_EVENTS: usize = 1_000;
const BATCHES: usize = 20;
const READ_SAMPLES: usize = 500;
const VECTOR_DIM: usize = 64;

/// xorshift64*: deterministic, so every run queries the same things.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn vector(&mut self) -> Vec<f32> {
        (0..VECTOR_DIM)
            .map(|_| (self.next() % 2000) as f32 / 1000.0 - 1.0)
            .collect()
    }
}

/// Synthetic vocabulary size; words are drawn with a skew (small ids far more often), like
/// natural text. `POG_BENCH_VOCAB=12` reproduces the worst case of a tiny vocabulary.
const VOCAB_DEFAULT: usize = 5_000;

fn word(rng: &mut Rng, vocab: usize) -> String {
    let hi = rng.below(vocab) + 1;
    format!("w{}", rng.below(hi))
}

fn prov() -> Provenance {
    Provenance::from_json(&json!({"trace_id": "0123456789abcdef0123456789abcdef", "opening_id": "bench", "agent": "bench", "inputs_hash": "ab".repeat(32)})).unwrap()
}

fn ev(kind: EventKind, payload: serde_json::Value) -> NewEvent {
    NewEvent::new(
        kind,
        ActorName::new("bench").unwrap(),
        Scope::default_scope(),
        payload,
        prov(),
        None,
    )
    .unwrap()
}

fn note(i: usize, rng: &mut Rng, vocab: usize) -> NewEvent {
    let text: Vec<String> = (0..12).map(|_| word(rng, vocab)).collect();
    ev(
        EventKind::NoteAdded,
        json!({"note_id": format!("n{i}"), "text": text.join(" "), "about": format!("contact:c{}", i % 1000)}),
    )
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn open(dir: &std::path::Path) -> Store {
    Store::open(
        &PogConfig::in_dir(dir),
        Arc::new(ManualClock::new(1_700_000_000_000)),
    )
    .unwrap()
}

/// Baseline: the same payload bytes inserted into a bare WAL table, FULL sync, no hashing or views.
fn raw_db(dir: &std::path::Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(dir.join("raw.sqlite")).unwrap();
    c.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
        .unwrap();
    c.pragma_update(None, "synchronous", "FULL").unwrap();
    c.execute_batch("CREATE TABLE t(seq INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
        .unwrap();
    c
}

fn main() {
    let total: usize = std::env::var("POG_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let vocab: usize = std::env::var("POG_BENCH_VOCAB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(VOCAB_DEFAULT);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let dir = tempfile::tempdir().unwrap();
    println!("| measurement | pog | baseline (raw SQLite) |\n|---|---|---|");

    // 1. Single writes: one event per commit (one fsync each).
    let mut s = open(&dir.path().join("single"));
    let raw = raw_db(dir.path());
    let (mut pog_t, mut raw_t) = (Vec::new(), Vec::new());
    for i in 0..SINGLE_WRITES {
        let e = note(i, &mut rng, vocab);
        let payload = e.payload_jcs().to_owned();
        let t = Instant::now();
        s.write(e).unwrap();
        pog_t.push(t.elapsed());
        let t = Instant::now();
        raw.execute("INSERT INTO t(payload) VALUES (?1)", [&payload])
            .unwrap();
        raw_t.push(t.elapsed());
    }
    let (pm, rm) = (median(pog_t), median(raw_t));
    println!(
        "| single write, median latency | {} ({:.0} events/s) | {} ({:.0} rows/s) |",
        us(pm),
        1.0 / pm.as_secs_f64(),
        us(rm),
        1.0 / rm.as_secs_f64()
    );
    drop(s);

    // 2. Batched writes: BATCH_EVENTS per commit; then fill up to `total` events.
    let mut s = open(&dir.path().join("big"));
    let (mut pog_t, mut raw_t) = (Vec::new(), Vec::new());
    // 1000 contacts first, so every `about` reference (and `why contact:cN`) resolves.
    let contacts: Vec<NewEvent> = (0..1000)
        .map(|c| {
            ev(
                EventKind::ContactUpserted,
                json!({"contact_id": format!("c{c}"), "name": format!("Contact {c}")}),
            )
        })
        .collect();
    s.write_batch(contacts).unwrap();
    let mut written = 1000;
    let mut i = 0;
    while written < total {
        let n = BATCH_EVENTS.min(total - written);
        // Every third event is an embedding of an earlier note: vectors for the search bench.
        let batch: Vec<NewEvent> = (0..n)
            .map(|k| {
                i += 1;
                if k % 3 == 2 {
                    ev(EventKind::EmbeddingSet, json!({"entity": format!("note:n{}", i - 1), "model": "bench", "vector": rng.vector()}))
                } else {
                    note(i, &mut rng, vocab)
                }
            })
            .collect();
        let payloads: Vec<String> = batch.iter().map(|e| e.payload_jcs().to_owned()).collect();
        let t = Instant::now();
        s.write_batch(batch).unwrap();
        let pog_d = t.elapsed();
        if pog_t.len() < BATCHES {
            pog_t.push(pog_d);
            let t = Instant::now();
            let mut raw = raw_db_reopen(dir.path());
            let tx = raw.transaction().unwrap();
            for p in &payloads {
                tx.execute("INSERT INTO t(payload) VALUES (?1)", [p])
                    .unwrap();
            }
            tx.commit().unwrap();
            raw_t.push(t.elapsed());
        }
        written += n;
    }
    let (pm, rm) = (median(pog_t), median(raw_t));
    println!(
        "| batched write ({BATCH_EVENTS}/commit, mixed notes + {VECTOR_DIM}-d embeddings), median | {:.0} events/s ({} per batch) | {:.0} rows/s |",
        BATCH_EVENTS as f64 / pm.as_secs_f64(),
        us(pm),
        BATCH_EVENTS as f64 / rm.as_secs_f64()
    );
    let reads = s.reads();

    // 3. Reads at `total` events.
    let (mut why_t, mut pk_t) = (Vec::new(), Vec::new());
    for _ in 0..READ_SAMPLES {
        let c = EntityRef::parse(&format!("contact:c{}", rng.below(1000))).unwrap();
        let t = Instant::now();
        let w = reads.why(&c).unwrap();
        why_t.push(t.elapsed());
        assert!(!w.direct.is_empty());
        let seq = rng.below(total) as i64 + 1;
        let t = Instant::now();
        reads
            .query("SELECT * FROM events WHERE seq = ?1", &[json!(seq)])
            .unwrap();
        pk_t.push(t.elapsed());
    }
    let why_n = reads
        .why(&EntityRef::parse("contact:c1").unwrap())
        .unwrap()
        .direct
        .len();
    println!(
        "| why (entity with ~{why_n} events), median / p99 | {} / {} | pk lookup via kb.query {} |",
        us(median(why_t.clone())),
        us(p99(why_t)),
        us(median(pk_t.clone()))
    );
    let (mut text_t, mut hyb_t, mut vec_t) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..READ_SAMPLES / 5 {
        let text = format!("{} {}", word(&mut rng, vocab), word(&mut rng, vocab));
        let v = rng.vector();
        let t = Instant::now();
        reads
            .search(&SearchQuery {
                text: text.clone(),
                vector: None,
                scope: None,
                limit: 10,
            })
            .unwrap();
        text_t.push(t.elapsed());
        let t = Instant::now();
        reads
            .search(&SearchQuery {
                text: String::new(),
                vector: Some(v.clone()),
                scope: None,
                limit: 10,
            })
            .unwrap();
        vec_t.push(t.elapsed());
        let t = Instant::now();
        let hits = reads
            .search(&SearchQuery {
                text,
                vector: Some(v),
                scope: None,
                limit: 10,
            })
            .unwrap();
        hyb_t.push(t.elapsed());
        assert!(!hits.is_empty());
    }
    let vectors = reads
        .query("SELECT count(*) FROM vectors", &[])
        .unwrap()
        .rows[0][0]
        .clone();
    println!(
        "| search, full-text only ({vocab}-word skewed vocabulary), median | {} | — |",
        us(median(text_t))
    );
    println!(
        "| search, vector only ({vectors} × {VECTOR_DIM}-d, exact scan), median | {} | — |",
        us(median(vec_t))
    );
    println!(
        "| search, hybrid (RRF), median | {} | pk lookup {} |",
        us(median(hyb_t)),
        us(median(pk_t))
    );

    // 4. Verify and backup of the whole store.
    let cfg = s.config().clone();
    let t = Instant::now();
    let r = verify(&cfg).unwrap();
    let verify_d = t.elapsed();
    assert!(r.ok());
    let t = Instant::now();
    let b = backup(&cfg, &dir.path().join("bk")).unwrap();
    let backup_d = t.elapsed();
    let size = std::fs::metadata(cfg.events_path()).unwrap().len()
        + std::fs::metadata(cfg.view_path()).unwrap().len();
    let raw_copy = {
        let t = Instant::now();
        std::fs::copy(cfg.events_path(), dir.path().join("copy1")).unwrap();
        std::fs::copy(cfg.view_path(), dir.path().join("copy2")).unwrap();
        t.elapsed()
    };
    println!(
        "| verify {} events | {:.0} ms | — |",
        r.events_checked,
        verify_d.as_secs_f64() * 1e3
    );
    println!(
        "| online backup ({:.1} MB, incl. verify of the copy) | {:.0} ms (copy alone {} ms) | cp of both files {:.0} ms |",
        size as f64 / 1e6,
        backup_d.as_secs_f64() * 1e3,
        b.elapsed_ms,
        raw_copy.as_secs_f64() * 1e3
    );
    let t = Instant::now();
    drop((reads, s));
    let n = Store::rebuild(&cfg).unwrap();
    println!(
        "| rebuild views from {n} events | {:.0} ms | — |",
        t.elapsed().as_secs_f64() * 1e3
    );
}

fn raw_db_reopen(dir: &std::path::Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(dir.join("raw.sqlite")).unwrap();
    c.pragma_update(None, "synchronous", "FULL").unwrap();
    c
}
