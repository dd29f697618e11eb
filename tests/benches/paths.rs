//! Path resolution and tree walks: the per-request costs both adapters pay.
//!
//! `cargo bench -p dmagent-tests --bench paths`. Each benchmark processes
//! a fixed batch; divan reports time per batch, and the ns-per-path figure
//! is that divided by the batch size (printed by `per_path_summary`).

use std::hint::black_box;

use dm_core::{Origin, Path};
use dm_cwmp::mapping::{PARAMETERS, Resolver};
use dm_lwm2m::mapping::{self as lwm2m, Lwm2mPath};

const BATCH: usize = 10_000;

fn main() {
    per_path_summary();
    divan::main();
}

/// 10,000 concrete TR-181 paths, cycling over every binding.
fn tr181_paths() -> Vec<String> {
    (0..BATCH)
        .map(|n| {
            let parameter = &PARAMETERS[n % PARAMETERS.len()];
            let instance = dm_core::InstanceId(1 + (n % 5) as u16);
            parameter.render(instance, Some((n % 3) as u16))
        })
        .collect()
}

/// 10,000 LwM2M paths over every mapped resource.
fn lwm2m_paths() -> Vec<String> {
    let all: Vec<String> = lwm2m::OBJECTS
        .iter()
        .flat_map(|o| {
            o.resources
                .iter()
                .map(move |r| format!("/{}/0/{}", o.lwm2m, r.lwm2m))
        })
        .collect();
    (0..BATCH).map(|n| all[n % all.len()].clone()).collect()
}

#[divan::bench]
fn resolve_10k_tr181_paths(bencher: divan::Bencher) {
    let paths = tr181_paths();
    let resolver = Resolver::global();
    bencher.bench(|| {
        for path in &paths {
            black_box(resolver.resolve(black_box(path)).ok());
        }
    });
}

#[divan::bench]
fn resolve_10k_lwm2m_paths(bencher: divan::Bencher) {
    let paths = lwm2m_paths();
    bencher.bench(|| {
        for path in &paths {
            let parsed: Option<Lwm2mPath> = black_box(path).parse().ok();
            black_box(parsed.and_then(|p| lwm2m::to_core(&p).ok()));
        }
    });
}

#[divan::bench]
fn walk_full_tree(bencher: divan::Bencher) {
    let (platform, _) = dm_tests::platform();
    let tree = dm_tests::tree(&platform);
    bencher.bench(|| {
        let mut count = 0usize;
        for schema in tree.objects() {
            let _ = tree.walk(Origin::Cli, &Path::object(schema.id), &mut |p, v| {
                black_box((p, v.is_ok()));
                count += 1;
            });
        }
        count
    });
}

/// One timed pass of each, as ns per path, so the figures the issue asks
/// for are printed directly. divan's statistics follow.
fn per_path_summary() {
    use std::time::Instant;
    let resolver = Resolver::global();
    let tr181 = tr181_paths();
    let lw = lwm2m_paths();
    let (platform, _) = dm_tests::platform();
    let tree = dm_tests::tree(&platform);
    let best = |f: &mut dyn FnMut() -> usize| {
        (0..20)
            .map(|_| {
                let start = Instant::now();
                let n = f();
                start.elapsed().as_nanos() as f64 / n as f64
            })
            .fold(f64::INFINITY, f64::min)
    };
    let tr = best(&mut || {
        for p in &tr181 {
            black_box(resolver.resolve(p).ok());
        }
        tr181.len()
    });
    let lw_ns = best(&mut || {
        for p in &lw {
            let parsed: Option<Lwm2mPath> = p.parse().ok();
            black_box(parsed.and_then(|p| lwm2m::to_core(&p).ok()));
        }
        lw.len()
    });
    let walk = best(&mut || {
        let mut count = 0;
        for schema in tree.objects() {
            let _ = tree.walk(Origin::Cli, &Path::object(schema.id), &mut |p, v| {
                black_box((p, v.is_ok()));
                count += 1;
            });
        }
        count
    });
    println!("best of 20 passes, ns per path:");
    println!("  resolve TR-181 path   {tr:8.1}");
    println!("  resolve LwM2M path    {lw_ns:8.1}");
    println!("  full-tree walk        {walk:8.1}  (per value visited)");
}
