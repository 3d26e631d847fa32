//! Unit tests of the audit writer's parts.

use super::*;

#[test]
fn sync_times_count_each_sync_in_its_bucket_and_the_sum() {
    let t = SyncTimes::default();
    for us in [10, 50, 51, 3_000, 5_000_000] {
        t.observe(Duration::from_micros(us));
    }
    let h = t.snapshot();
    assert_eq!(h.count, 5);
    assert!((h.sum_seconds - 5.003111).abs() < 1e-9, "{}", h.sum_seconds);
    let at = |bound: f64| h.buckets.iter().find(|b| b.0 == bound).unwrap().1;
    assert_eq!(at(50e-6), 2, "10 and 50 µs are at or below 50 µs");
    assert_eq!(at(100e-6), 1);
    assert_eq!(at(3_200e-6), 1);
    assert_eq!(
        at((50u64 << 15) as f64 / 1e6),
        0,
        "5 s is past the last bound"
    );
    assert_eq!(h.buckets.last(), Some(&(f64::MAX, 1)));
    assert_eq!(h.buckets.iter().map(|b| b.1).sum::<u64>(), h.count);
}
