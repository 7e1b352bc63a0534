//! Rules for a cluster's load-balancing options: settings must belong to the chosen policy and
//! stay within the ranges the algorithms need.

use super::Checker;
use crate::path::YamlPath;
use crate::{ChoiceCount, ClusterConfig, HashKeyConfig, LbPolicyConfig};

/// Largest ring (Envoy's `maximum_ring_size` default).
const MAX_RING: u32 = 8_388_608;
/// Largest Maglev table (Envoy's limit).
const MAX_MAGLEV: u32 = 5_000_011;

// === impl Checker ===

impl Checker<'_> {
    /// Checks the balancing settings of `cluster` at `path`.
    pub(super) fn balancing(&mut self, cluster: &ClusterConfig, path: &YamlPath) {
        let policy = cluster.lb_policy;
        let hashing = matches!(policy, LbPolicyConfig::RingHash | LbPolicyConfig::Maglev);
        let blocks = [
            (
                "least_request",
                cluster.least_request.is_some(),
                LbPolicyConfig::LeastRequest,
            ),
            (
                "peak_ewma",
                cluster.peak_ewma.is_some(),
                LbPolicyConfig::PeakEwma,
            ),
            (
                "ring_hash",
                cluster.ring_hash.is_some(),
                LbPolicyConfig::RingHash,
            ),
            ("maglev", cluster.maglev.is_some(), LbPolicyConfig::Maglev),
        ];
        for (key, given, owner) in blocks {
            if given && policy != owner {
                self.report(
                    &path.key(key),
                    format!(
                        "`{key}` settings are given but lb_policy is {}",
                        policy_name(policy)
                    ),
                    format!("set `lb_policy: {key}` or remove the `{key}` block"),
                );
            }
        }
        if !hashing {
            for (key, given) in [
                ("hash_key", cluster.hash_key.is_some()),
                ("hash_balance_factor", cluster.hash_balance_factor.is_some()),
            ] {
                if given {
                    self.report(
                        &path.key(key),
                        format!(
                            "`{key}` only applies to hashing policies, but lb_policy is {}",
                            policy_name(policy)
                        ),
                        "use `lb_policy: ring_hash` or `lb_policy: maglev`, or remove it",
                    );
                }
            }
        }
        if let Some(lr) = &cluster.least_request {
            let p = path.key("least_request");
            if let ChoiceCount::Sample(n) = lr.choice_count
                && n as usize > cluster.endpoints.len().max(2)
            {
                self.report(
                    &p.key("choice_count"),
                    format!(
                        "choice_count {n} exceeds the {} endpoints",
                        cluster.endpoints.len()
                    ),
                    "use 2 (power of two choices) or `all`",
                );
            }
            if !(lr.active_request_bias.is_finite() && lr.active_request_bias >= 0.0) {
                self.report(
                    &p.key("active_request_bias"),
                    format!(
                        "active_request_bias {} is not a number ≥ 0",
                        lr.active_request_bias
                    ),
                    "use 1.0 (default); 0 ignores load",
                );
            }
        }
        if let Some(e) = &cluster.peak_ewma {
            let p = path.key("peak_ewma");
            for (key, d) in [
                ("decay", e.decay),
                ("default_rtt", e.default_rtt),
                ("failure_penalty", e.failure_penalty),
                ("overload_backoff", e.overload_backoff),
            ] {
                if d.get().is_zero() {
                    self.report(
                        &p.key(key),
                        format!("{key} is 0"),
                        "give a positive duration, e.g. 10s",
                    );
                }
            }
        }
        if let Some(r) = &cluster.ring_hash
            && !(64..=MAX_RING).contains(&r.table_size)
        {
            self.report(
                &path.key("ring_hash").key("table_size"),
                format!("ring table_size {} is out of range", r.table_size),
                format!("use 64 to {MAX_RING}; 1024 (default) suits up to ~100 endpoints"),
            );
        }
        if let Some(m) = &cluster.maglev {
            let p = path.key("maglev").key("table_size");
            if !(7..=MAX_MAGLEV).contains(&m.table_size) || !is_prime(m.table_size) {
                self.report(
                    &p,
                    format!(
                        "maglev table_size {} is not a prime from 7 to {MAX_MAGLEV}",
                        m.table_size
                    ),
                    "use a prime such as 65537 (default) or 5000011",
                );
            } else if (m.table_size as usize) < cluster.endpoints.len() {
                self.report(
                    &p,
                    format!(
                        "maglev table_size {} is smaller than the {} endpoints",
                        m.table_size,
                        cluster.endpoints.len()
                    ),
                    "use a prime at least 100 × the endpoint count for even shares",
                );
            }
        }
        if let Some(k) = &cluster.hash_key {
            self.hash_key(k, &path.key("hash_key"));
        }
        if let Some(f) = cluster.hash_balance_factor
            && !(f.is_finite() && f >= 1.0)
        {
            self.report(
                &path.key("hash_balance_factor"),
                format!("hash_balance_factor {f} is below 1.0"),
                "use a factor ≥ 1.0, e.g. 1.25 (an endpoint may take 25 % more than the mean)",
            );
        }
        if let Some(s) = &cluster.slow_start {
            let p = path.key("slow_start");
            if s.window.get().is_zero() {
                self.report(
                    &p.key("window"),
                    "slow start window is 0",
                    "give a duration such as 30s",
                );
            }
            if !(s.aggression.is_finite() && s.aggression > 0.0) {
                self.report(
                    &p.key("aggression"),
                    format!("aggression {} is not > 0", s.aggression),
                    "use 1.0 for a linear ramp",
                );
            }
            if !(1..=100).contains(&s.min_weight_percent) {
                self.report(
                    &p.key("min_weight_percent"),
                    format!("min_weight_percent {} is not 1–100", s.min_weight_percent),
                    "use 10 (default)",
                );
            }
        }
        if cluster.panic_threshold > 100 {
            self.report(
                &path.key("panic_threshold"),
                format!("panic_threshold {} is above 100 %", cluster.panic_threshold),
                "use a percentage from 0 (never panic) to 100; default 50",
            );
        }
    }

    fn hash_key(&mut self, key: &HashKeyConfig, path: &YamlPath) {
        let set = key.set_keys();
        if set.len() != 1 {
            self.report(
                path,
                if set.is_empty() {
                    "hash_key names nothing to hash".to_owned()
                } else {
                    format!("hash_key sets {} keys ({})", set.len(), set.join(", "))
                },
                "set exactly one of header, cookie, query, path: true, source_ip: true, five_tuple: true",
            );
        }
        if let Some(h) = &key.header
            && let Err(problem) = super::syntax::check_header_name(h)
        {
            self.report(&path.key("header"), problem.message, problem.hint);
        }
        for (k, v) in [("cookie", &key.cookie), ("query", &key.query)] {
            if v.as_deref().is_some_and(str::is_empty) {
                self.report(
                    &path.key(k),
                    format!("{k} name is empty"),
                    format!("name the {k} to hash"),
                );
            }
        }
    }
}

fn policy_name(p: LbPolicyConfig) -> &'static str {
    match p {
        LbPolicyConfig::RoundRobin => "round_robin",
        LbPolicyConfig::Random => "random",
        LbPolicyConfig::LeastRequest => "least_request",
        LbPolicyConfig::PeakEwma => "peak_ewma",
        LbPolicyConfig::RingHash => "ring_hash",
        LbPolicyConfig::Maglev => "maglev",
    }
}

fn is_prime(n: u32) -> bool {
    n >= 2
        && (2..)
            .take_while(|d: &u32| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

#[cfg(test)]
mod tests {
    #[test]
    fn primes() {
        assert!(super::is_prime(65537));
        assert!(super::is_prime(5_000_011));
        assert!(!super::is_prime(65536));
        assert!(!super::is_prime(1));
    }
}
