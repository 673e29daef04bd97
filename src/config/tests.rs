//! Tests of loading and validating config.yaml.
use super::*;

const SEED: &str = include_str!("../../tests/data/seed-config.yaml");

#[test]
fn seed_config_loads_unchanged_with_block_size_warning() {
    let c = Config::parse(SEED, Path::new("/srv/x")).unwrap();
    assert_eq!(c.nodes.len(), 3);
    assert_eq!((c.k(), c.m(), c.chunk_size()), (2, 1, DEFAULT_CHUNK_SIZE));
    assert_eq!(c.nodes[0].storage_path, Path::new("/srv/x/data/node-1"));
    assert_eq!(c.metrics.output_file, Path::new("/srv/x/metrics.csv"));
    assert!(c.warnings.iter().any(|w| w.contains("block_size")));
    assert_eq!(c.api.host, "localhost");
}

#[test]
fn zero_k_names_the_key() {
    let text = SEED.replace("k: 2", "k: 0");
    let err = Config::parse(&text, Path::new("/"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("erasure_coding.k must be ≥ 1, got 0"), "{err}");
}

#[test]
fn node_timeout_defaults_to_two_seconds_and_zero_names_the_key() {
    let c = Config::parse(SEED, Path::new("/")).unwrap();
    assert_eq!(c.node_timeout(), std::time::Duration::from_millis(2000));
    assert!(c.warnings.iter().all(|w| !w.contains("node_timeout_ms")));
    let text = SEED.replace("recovery:\n", "recovery:\n  node_timeout_ms: 250\n");
    let c = Config::parse(&text, Path::new("/")).unwrap();
    assert_eq!(c.node_timeout(), std::time::Duration::from_millis(250));
    assert!(
        c.warnings.iter().all(|w| !w.contains("node_timeout_ms")),
        "{:?}",
        c.warnings
    );
    let text = SEED.replace("recovery:\n", "recovery:\n  node_timeout_ms: 0\n");
    let err = Config::parse(&text, Path::new("/"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("recovery.node_timeout_ms must be ≥ 1, got 0"),
        "{err}"
    );
}

#[test]
fn unknown_keys_warn_with_their_path() {
    let text = format!("{SEED}\nfrobnicate: 1\napi:\n  colour: red\n");
    // A duplicated `api` mapping is a YAML error; use a fresh document instead.
    assert!(Config::parse(&text, Path::new("/")).is_err());
    let text = SEED.replace("api:\n", "frobnicate: 1\napi:\n  colour: red\n");
    let c = Config::parse(&text, Path::new("/")).unwrap();
    assert!(c.warnings.iter().any(|w| w.contains("`frobnicate`")));
    assert!(c.warnings.iter().any(|w| w.contains("`api.colour`")));
}

#[test]
fn a_typo_of_a_known_key_is_an_error_naming_the_key_meant() {
    let text = SEED.replace("erasure_coding:", "erasure_codng:");
    let err = Config::parse(&text, Path::new("/")).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    let err = err.to_string();
    assert!(
        err.contains("unknown key erasure_codng: did you mean erasure_coding?"),
        "{err}"
    );
    let text = SEED.replace("retry_attempts:", "retry_atempts:");
    let err = Config::parse(&text, Path::new("/"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("did you mean recovery.retry_attempts?"),
        "{err}"
    );
}

#[test]
fn sizes_take_suffixes_and_paths_are_written_plainly() {
    let text = SEED
        .replace("max_file_size: 104857600", "max_file_size: 100MiB")
        .replace("m: 1", "m: 1\n  chunk_size: 1M")
        .replace("./data/node-1", ".//data/./node-1");
    let c = Config::parse(&text, Path::new("/srv/x")).unwrap();
    assert_eq!((c.api.max_file_size, c.chunk_size()), (100 << 20, 1 << 20));
    assert_eq!(c.nodes[0].storage_path, Path::new("/srv/x/data/node-1"));
    assert_eq!(c.metadata.path, Path::new("/srv/x/data/metadata.db"));
    let text = SEED.replace("m: 1", "m: 1\n  chunk_size: 4Q");
    let err = Config::parse(&text, Path::new("/"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("erasure_coding.chunk_size") && err.contains("4Q"),
        "{err}"
    );
}

#[test]
fn region_not_in_replication_list_is_rejected() {
    let text = SEED.replace("region: \"eu-west-1\"", "region: \"ap-south-1\"");
    let err = Config::parse(&text, Path::new("/"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("nodes[2].region"), "{err}");
}

#[test]
fn duplicate_node_id_and_too_few_nodes_are_rejected() {
    let text = SEED.replace("id: \"node-2\"", "id: \"node-1\"");
    assert!(Config::parse(&text, Path::new("/"))
        .unwrap_err()
        .to_string()
        .contains("unique"));
    let text = SEED.replace("m: 1", "m: 5");
    assert!(Config::parse(&text, Path::new("/"))
        .unwrap_err()
        .to_string()
        .contains("needs at least"));
}

#[test]
fn type_errors_name_the_key() {
    let text = SEED.replace("k: 2", "k: \"two\"");
    let err = Config::parse(&text, Path::new("/"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("erasure_coding.k"), "{err}");
    let text = SEED.replace("port: 8000", "port: 70000");
    let err = Config::parse(&text, Path::new("/"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("api.port"), "{err}");
    let text = SEED.replace("id: \"node-2\"", "id: [1]");
    let err = Config::parse(&text, Path::new("/"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("nodes[1].id"), "{err}");
}

#[test]
fn api_limits_default_and_are_checked() {
    let c = Config::parse(SEED, Path::new("/")).unwrap();
    assert_eq!(c.api.max_connections, 1024);
    assert_eq!(
        (c.api.header_timeout_secs, c.api.idle_timeout_secs),
        (20, 60)
    );
    for (line, key) in [
        ("max_connections: 0", "api.max_connections must be"),
        ("header_timeout_secs: 0", "api.header_timeout_secs must be"),
        ("idle_timeout_secs: 100000", "api.idle_timeout_secs must be"),
    ] {
        let text = SEED.replace("api:\n", &format!("api:\n  {line}\n"));
        let err = Config::parse(&text, Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{err}");
    }
    let text = SEED.replace(
        "api:\n",
        "api:\n  max_connections: 8\n  header_timeout_secs: 2\n",
    );
    let c = Config::parse(&text, Path::new("/")).unwrap();
    assert_eq!((c.api.max_connections, c.api.header_timeout_secs), (8, 2));
    assert!(c.warnings.iter().all(|w| !w.contains("max_connections")));
}

#[test]
fn broken_yaml_is_a_clear_error() {
    let err = Config::parse("nodes: [", Path::new("/")).unwrap_err();
    assert!(err.to_string().contains("not valid YAML"));
}

#[test]
fn region_loss_warning_when_one_region_holds_more_than_m() {
    let c = Config::for_test(Path::new("/t"), &["a", "a", "b"], 2, 1, 1024);
    assert!(c.warnings.iter().any(|w| w.contains("losing one region")));
    let c = Config::for_test(Path::new("/t"), &["a", "b", "c"], 2, 1, 1024);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn s3_is_off_without_its_section_and_needs_keys_when_on() {
    let c = Config::parse(SEED, Path::new("/")).unwrap();
    assert!(!c.s3.enabled);
    assert_eq!((c.s3.host.as_str(), c.s3.port), ("127.0.0.1", 9000));
    let on = format!(
        "{SEED}\ns3:\n  enabled: true\n  access_key: \"ak\"\n  secret_key: \"0123456789\"\n"
    );
    let c = Config::parse(&on, Path::new("/")).unwrap();
    assert!(c.s3.enabled && c.s3.region == "us-east-1");
    assert!(
        c.warnings.iter().all(|w| !w.contains("s3")),
        "{:?}",
        c.warnings
    );
    let keyless = format!("{SEED}\ns3:\n  enabled: true\n");
    let err = Config::parse(&keyless, Path::new("/"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("s3.access_key must be set"), "{err}");
    let typo = format!("{SEED}\ns3:\n  enabled: true\n  acess_key: \"ak\"\n");
    let err = Config::parse(&typo, Path::new("/"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("s3.access_key"), "{err}");
}

#[test]
fn a_node_is_a_folder_or_a_bucket_and_its_s3_keys_are_known() {
    let bucket = "    s3: {endpoint: \"http://127.0.0.1:9000\", bucket: \"b\", prefix: \"n1/\", access_key: \"a\", secret_key: \"s\"}\n";
    let first = "    storage_path: \"./data/node-1\"\n";
    let text = SEED.replacen(first, bucket, 1);
    let c = Config::parse(&text, Path::new("/srv/x")).unwrap();
    assert_eq!(c.nodes[0].s3.as_ref().unwrap().bucket, "b");
    assert!(c.nodes[0].storage_path.as_os_str().is_empty());
    assert!(
        c.warnings.iter().all(|w| !w.contains("s3")),
        "{:?}",
        c.warnings
    );
    // Both, or neither: exit 2 naming the node.
    let both = SEED.replacen(first, &format!("{first}{bucket}"), 1);
    let err = Config::parse(&both, Path::new("/"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nodes[0] has both storage_path and s3"),
        "{err}"
    );
    let neither = SEED.replacen(first, "", 1);
    let err = Config::parse(&neither, Path::new("/"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("nodes[0].storage_path is missing"), "{err}");
    let no_bucket = SEED.replacen(first, &bucket.replace("bucket: \"b\", ", ""), 1);
    let err = Config::parse(&no_bucket, Path::new("/"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("nodes[0].s3.bucket"), "{err}");
}
