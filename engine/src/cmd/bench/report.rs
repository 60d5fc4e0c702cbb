//! The report of `bench`: one JSON object (the model, the engine's figures, `transformers`) and
//! the table printed from it.

use serde_json::{json, Value};

use crate::bundle::Bundle;

/// One JSON object: the model, the engine's figures at the top level (`weights`, `decode_ms`,
/// `prefill_ms`, `bound_ms`, `floor_ms`, …), and `transformers` with the same keys.
pub(super) fn report(bundle: &Bundle, engine: Value, transformers: Option<Value>) -> Value {
    let c = &bundle.config;
    let mut report = json!({
        "bundle": bundle.dir.display().to_string(),
        "model": {
            "parameters": c.parameter_count(),
            "hidden_size": c.hidden_size,
            "layers": c.num_hidden_layers,
            "heads": c.num_attention_heads,
            "kv_heads": c.kv_heads(),
            "intermediate_size": c.intermediate_size,
            "vocab_size": c.vocab_size,
        },
    });
    if let (Some(out), Value::Object(e)) = (report.as_object_mut(), engine) {
        out.extend(e);
    }
    if let Some(mut tf) = transformers {
        for (section, key, flat) in [
            ("decode", "mean_ms", "decode_ms"),
            ("prefill", "median_ms", "prefill_ms"),
        ] {
            let figures: serde_json::Map<String, Value> = tf[section]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v[key].clone())).collect())
                .unwrap_or_default();
            tf[flat] = Value::Object(figures);
        }
        report["transformers"] = tf;
    }
    report
}

pub(super) fn print_table(report: &Value) {
    let m = &report["model"];
    println!(
        "bundle {}: {:.1}M parameters, hidden {}, {} layers, {} heads ({} kv), vocab {}",
        report["bundle"].as_str().unwrap_or("?"),
        m["parameters"].as_f64().unwrap_or(0.0) / 1e6,
        m["hidden_size"],
        m["layers"],
        m["heads"],
        m["kv_heads"],
        m["vocab_size"],
    );
    println!(
        "weights {} ({:.1} MB, {} matrices kept f32), KV cache {}, {} threads, {} kernels; read \
         bandwidth {:.1} GB/s",
        report["weights"].as_str().unwrap_or("?"),
        report["weight_bytes"].as_f64().unwrap_or(0.0) / 1e6,
        report["matrices_kept_f32"],
        report["kv_cache"].as_str().unwrap_or("?"),
        report["threads"],
        report["cpu_kernels"].as_str().unwrap_or("?"),
        report["bandwidth_gbs"].as_f64().unwrap_or(0.0),
    );
    let tf = report.get("transformers");
    let num = |v: &Value| {
        v.as_f64()
            .map(|x| format!("{x:.2}"))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "{:<26}{:>10}{:>10}{:>9}{:>14}",
        "", "engine", "floor", "/floor", "transformers"
    );
    let keys = |section: &str| -> Vec<String> {
        let mut k: Vec<String> = report[section]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        k.sort_by_key(|k| k.parse::<usize>().unwrap_or(usize::MAX));
        k
    };
    for ctx in keys("decode_ms") {
        println!(
            "{:<26}{:>10}{:>10}{:>9}{:>14}",
            format!("decode ms/token @ {ctx}"),
            num(&report["decode_ms"][&ctx]),
            num(&report["floor_ms"][&ctx]),
            num(&report["decode_over_floor"][&ctx]),
            tf.map(|t| num(&t["decode_ms"][&ctx])).unwrap_or_default(),
        );
    }
    for len in keys("prefill_ms") {
        println!(
            "{:<26}{:>10}{:>10}{:>9}{:>14}",
            format!("prefill ms, {len} tokens"),
            num(&report["prefill_ms"][&len]),
            "",
            "",
            tf.map(|t| num(&t["prefill_ms"][&len])).unwrap_or_default(),
        );
    }
    for (label, key) in [("load ms", "load_ms"), ("peak memory MiB", "peak_rss_mib")] {
        println!(
            "{:<26}{:>10}{:>10}{:>9}{:>14}",
            label,
            num(&report[key]),
            "",
            "",
            tf.map(|t| num(&t[key])).unwrap_or_default(),
        );
    }
    println!("(floor: the bytes a decode step reads at that context / the read bandwidth)");
}
