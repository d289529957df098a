//! Percentiles, as the tap, the detector and the load generator report them.

/// The `p` percentile (0..=1, nearest rank) of `sorted`, or `None` when empty.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    let last = sorted.len().checked_sub(1)?;
    Some(sorted[(last as f64 * p.clamp(0.0, 1.0)).round() as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        assert_eq!(percentile::<u32>(&[], 0.5), None);
        assert_eq!(percentile(&[7], 0.99), Some(7));
        let values: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&values, 0.0), Some(1));
        assert_eq!(percentile(&values, 0.5), Some(51));
        assert_eq!(percentile(&values, 0.99), Some(99));
        assert_eq!(percentile(&values, 1.0), Some(100));
    }
}
