//! A Zipf-distributed key picker: key k (1-based) is drawn with probability ∝ 1 / k^s, the
//! skew of real user activity (a few users send most messages).

/// Draws keys `0..n` with Zipf skew `s`.
#[derive(Debug, Clone)]
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Zipf {
        let mut cumulative = Vec::with_capacity(n.max(1));
        let mut total = 0.0;
        for k in 1..=n.max(1) {
            total += 1.0 / (k as f64).powf(s);
            cumulative.push(total);
        }
        for c in &mut cumulative {
            *c /= total;
        }
        Zipf { cumulative }
    }

    /// The key for a uniform draw `u` in `[0, 1)`.
    pub fn key(&self, u: f64) -> usize {
        self.cumulative
            .partition_point(|c| *c <= u)
            .min(self.cumulative.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_keys_dominate() {
        let zipf = Zipf::new(1000, 1.1);
        let draws = 100_000;
        let mut first_ten = 0;
        for i in 0..draws {
            let u = (i as f64 + 0.5) / draws as f64;
            if zipf.key(u) < 10 {
                first_ten += 1;
            }
        }
        let share = first_ten as f64 / draws as f64;
        assert!(share > 0.35 && share < 0.6, "share of the top 1 %: {share}");
        assert_eq!(zipf.key(0.0), 0);
        assert_eq!(zipf.key(0.999_999_9), 999);
    }
}
