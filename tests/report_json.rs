//! The typed reports (`minigcs::report`) against the JSON that outside
//! scripts rely on. `tests/data/reports/` holds documents captured from a
//! running daemon before the reports were typed (`ctl --json health` with a
//! node down, `stats`, `nodes`, `info` with a shard on a down node, the
//! placement xattr, a scrub that found a flipped byte, a foreign shard and a
//! missing file, `recover` with its progress lines, the HTTP recovery reply,
//! the metrics summary and `ping`; with the `.txt` of some, what `ctl` printed
//! for them). Each must decode into its type and encode
//! back to the identical JSON: the same keys, nesting and value types
//! (integers stay integers, floats floats). Every type also round-trips
//! (value → JSON → value), and the reports a live service builds have the
//! same shape as the captured ones; `ctl` prints the same text from the typed
//! reports as it printed from the JSON. Run with `cargo test --release --test
//! report_json`.

mod common;

use common::{flip_last_byte, seeded_bytes, TestStore};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Mutex;
use std::time::Duration;

use minigcs::control::{print, Reply, Request};
use minigcs::model::PutOptions;
use minigcs::report::{
    to_value, HealthReport, InfoReport, MetricsSummary, NodesReport, PingReply, PlacementReport,
    Progress, RecoveryReply, RecoveryReport, ScrubReport, StatsReport,
};
use minigcs::service::Service;

fn captured_text(file: &str) -> String {
    let path = format!("{}/tests/data/reports/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn captured(name: &str) -> Value {
    serde_json::from_str(&captured_text(&format!("{name}.json")))
        .unwrap_or_else(|e| panic!("{name}.json: {e}"))
}

/// Decode the captured document `name` as `T`, check it encodes back to the
/// same JSON and that the typed value survives another round trip.
fn pin<T>(name: &str) -> T
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let doc = captured(name);
    let typed: T = serde_path_to_error::deserialize(doc.clone())
        .unwrap_or_else(|e| panic!("{name}.json at {}: {}", e.path(), e.inner()));
    assert_eq!(to_value(&typed), doc, "{name}.json changed on re-encoding");
    let again: T = serde_json::from_value(to_value(&typed)).expect("decodes again");
    assert_eq!(again, typed, "{name}: round trip");
    typed
}

/// Objects that are maps keyed by node id, region or operation name.
const MAPS: [&str; 4] = [
    "node_stats",
    "nodes_by_region",
    "region_stats",
    "operation_summary",
];

/// Every leaf path of a document with its JSON type (`int`, `float`, …);
/// array elements are `[]`, the entries of the maps above `*`.
fn shape(v: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, path: &str, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(map) if map.is_empty() => {
                out.insert(format!("{path}: {{}}"));
            }
            Value::Object(map) => {
                let last = path.rsplit('.').next().unwrap_or("");
                for (k, x) in map {
                    let name = if MAPS.contains(&last) {
                        "*"
                    } else {
                        k.as_str()
                    };
                    let sub = if path.is_empty() {
                        name.to_string()
                    } else {
                        format!("{path}.{name}")
                    };
                    walk(x, &sub, out);
                }
            }
            Value::Array(items) if items.is_empty() => {
                out.insert(format!("{path}: []"));
            }
            Value::Array(items) => items
                .iter()
                .for_each(|x| walk(x, &format!("{path}[]"), out)),
            leaf => {
                let kind = match leaf {
                    Value::Null => "null",
                    Value::Bool(_) => "bool",
                    Value::Number(n) if n.is_f64() => "float",
                    Value::Number(_) => "int",
                    _ => "string",
                };
                out.insert(format!("{path}: {kind}"));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(v, "", &mut out);
    out
}

fn same_shape(name: &str, live: &impl Serialize) {
    assert_eq!(
        shape(&to_value(live)),
        shape(&captured(name)),
        "{name}: the live report's keys or value types differ from the captured document"
    );
}

#[test]
fn captured_documents_decode_and_encode_unchanged() {
    let health: HealthReport = pin("health");
    assert_eq!(health.failed_nodes, ["node-3"]);
    let stats: StatsReport = pin("stats");
    assert_eq!(stats.total_nodes, 3);
    pin::<NodesReport>("nodes");
    let info: InfoReport = pin("info");
    assert!(!info.healthy);
    pin::<InfoReport>("info_healthy");
    pin::<PlacementReport>("placement");
    let scrub: ScrubReport = pin("scrub");
    let kinds: Vec<bool> = scrub
        .problems
        .iter()
        .map(|p| p.problem.is_missing())
        .collect();
    assert_eq!(kinds, [false, false, true], "{scrub:?}");
    pin::<RecoveryReport>("recovery");
    let reply: RecoveryReply = pin("recovery_http");
    assert_eq!(reply.report.message, "Recovery completed for node node-3");
    let progress: Vec<Progress> = pin("progress");
    assert_eq!(progress[0].eta_secs, None);
    pin::<MetricsSummary>("metrics");
    pin::<PingReply>("ping");
}

#[test]
fn ctl_prints_the_same_tables_from_the_typed_reports() {
    let info = Request::Info {
        key: String::new(),
        path: None,
    };
    for (name, request) in [
        ("health", Request::Health),
        ("stats", Request::Stats),
        ("scrub", Request::Scrub { repair: false }),
        ("info_healthy", info),
        ("metrics", Request::Metrics),
    ] {
        let reply = Reply::decode(&request, captured(name)).unwrap();
        assert_eq!(
            print::render(&reply),
            captured_text(&format!("{name}.txt")),
            "ctl {name}"
        );
    }
}

#[test]
fn the_http_recovery_reply_moves_the_message_to_summary() {
    let report: RecoveryReport = pin("recovery");
    let reply = RecoveryReply::from(RecoveryReport {
        message: "Recovery of node node-2 incomplete: 1 chunk(s) could not be rebuilt".into(),
        ..report
    });
    let json = to_value(&reply);
    assert_eq!(json["message"], "Recovery completed for node node-2");
    assert_eq!(
        json["summary"],
        "Recovery of node node-2 incomplete: 1 chunk(s) could not be rebuilt"
    );
}

/// A three-region store with a flipped shard, a deleted shard file, and then
/// a lost node: every report it builds has the captured shape.
#[test]
fn live_reports_have_the_captured_shape() {
    const CS: u64 = 64 * 1024;
    let store = TestStore::new(&["us-east-1", "us-west-1", "eu-west-1"], 2, 1, CS);
    let svc: &Service = store.service();
    let data = seeded_bytes(7, (CS * 7 / 2) as usize);
    svc.put_object("dir/obj.bin", &mut &data[..], PutOptions::default())
        .unwrap();
    svc.put_object("small.txt", &mut &b"small"[..], PutOptions::default())
        .unwrap();

    let chunks = store.service().object_info("dir/obj.bin").unwrap().chunks;
    let shard_path = |c: usize, i: usize| {
        let rec = &chunks[c];
        store.shard_path(rec.placement[i].unwrap(), rec.layout.chunk_id, i)
    };
    flip_last_byte(&shard_path(0, 0));
    std::fs::remove_file(shard_path(1, 1)).unwrap();
    let scrub = svc.scrub(false, &|_| {}).unwrap();
    assert_eq!((scrub.corrupt, scrub.missing), (1, 1), "{scrub:?}");
    same_shape("scrub", &scrub);
    same_shape("stats", &svc.stats_report().unwrap());
    // Repaired first, so that losing a node leaves every chunk readable.
    assert_eq!(svc.scrub(true, &|_| {}).unwrap().repaired, 2);

    store.delete_node(2);
    let health = svc.health_report().unwrap();
    assert_eq!(health.failed_nodes, ["node-3"]);
    same_shape("health", &health);
    same_shape("nodes", &svc.nodes_report().unwrap());
    let info = store.service().info_report("small.txt").unwrap();
    assert!(!info.healthy, "{info:?}");
    same_shape("info", &info);
    let ino = svc.resolve_key("dir/obj.bin").unwrap().unwrap().ino;
    let xattr = svc.get_xattr(ino, Service::PLACEMENT_XATTR).unwrap();
    let placement: PlacementReport = serde_json::from_slice(&xattr).unwrap();
    same_shape("placement", &placement);

    let lines = Mutex::new(Vec::new());
    let report = svc
        .recover_node("node-3", &|p| lines.lock().unwrap().push(p.clone()))
        .unwrap();
    same_shape("recovery", &report);
    same_shape("recovery_http", &RecoveryReply::from(report));
    let lines = lines.into_inner().unwrap();
    let ends = [lines[0].clone(), lines[lines.len() - 1].clone()];
    same_shape("progress", &ends);

    svc.metrics()
        .record("upload", "k", 5, Duration::from_millis(3), true, None);
    svc.metrics()
        .record("download", "k", 5, Duration::from_millis(1), true, None);
    let summary = svc.metrics().summary_json();
    let typed: MetricsSummary = serde_json::from_value(summary.clone()).unwrap();
    assert_eq!(
        to_value(&typed),
        summary,
        "the metrics summary has keys its type lacks"
    );
    same_shape("metrics", &typed);
    same_shape("ping", &PingReply::now());
}
