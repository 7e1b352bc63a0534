//! Why a pick chose its endpoint: the [`Explanation`] behind the decision record.
//!
//! Explaining is a separate path from picking: [`crate::Balancer::pick`] stays as fast as ever,
//! and [`crate::Balancer::explain`] (or [`crate::Balancer::pick_explained`], which picks and
//! explains together so sampled candidates are the real ones) runs only when an operator asked
//! for the record. It reads live state after the fact, so under concurrent traffic the in-flight
//! counts and costs it reports may differ slightly from what the pick saw: best effort.

use weir_core::{HealthFlags, Unhealthy};

use crate::members::{Members, View};

/// One endpoint a policy compared, with the score it compared by (lower wins).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Index of the endpoint in the balancer's endpoint slice.
    pub index: usize,
    /// The score, in the unit named by [`Explanation::score`].
    pub score: f64,
}

/// How many endpoints could not take the request, by the strongest reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Excluded {
    /// Failing their active health check.
    pub unhealthy: usize,
    /// Ejected by passive outlier detection.
    pub ejected: usize,
    /// Drained by an operator.
    pub drained: usize,
}

/// What a policy considered when it chose endpoint [`Explanation::picked`].
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The policy's config name (`least_request`, `maglev`, ...).
    pub policy: &'static str,
    /// The chosen endpoint's index.
    pub picked: usize,
    /// What the candidates' scores measure (`in_flight`, `cost_ms`, `load`); empty when the
    /// policy compares no scores.
    pub score: &'static str,
    /// The endpoints compared, with their scores.
    pub candidates: Vec<Candidate>,
    /// The request's hash (hashing policies); `None` when it had no hash key.
    pub hash: Option<u64>,
    /// The endpoint the hash maps to before health and bounded load (hashing policies).
    pub home: Option<usize>,
    /// Endpoints passed over after `home` (unhealthy, or full under bounded load).
    pub walked: Vec<usize>,
    /// Endpoints that could not take traffic.
    pub excluded: Excluded,
    /// Whether the panic threshold applied (health ignored).
    pub panic: bool,
    /// Round robin: the cycle slot handed out and the cycle's length.
    pub position: Option<(usize, usize)>,
    /// A short remark, e.g. how candidates were found.
    pub note: Option<&'static str>,
}

// === impl Excluded ===

impl Excluded {
    /// All excluded endpoints.
    pub fn total(&self) -> usize {
        self.unhealthy + self.ejected + self.drained
    }
}

// === impl Explanation ===

impl Explanation {
    /// The least an explanation says: the policy and the pick.
    pub fn new(policy: &'static str, picked: usize) -> Self {
        Self {
            policy,
            picked,
            score: "",
            candidates: Vec::new(),
            hash: None,
            home: None,
            walked: Vec::new(),
            excluded: Excluded::default(),
            panic: false,
            position: None,
            note: None,
        }
    }

    /// `new` plus the exclusions and panic state of `members` now.
    pub(crate) fn of(policy: &'static str, picked: usize, members: &Members) -> Self {
        let view = members.view();
        let mut e = Self::new(policy, picked);
        e.panic = view.panicking();
        e.excluded = excluded(members, &view);
        e
    }
}

/// Counts the endpoints of `members` outside `view`'s eligible set, by reason.
fn excluded(members: &Members, view: &View) -> Excluded {
    let mut out = Excluded::default();
    for i in 0..members.len() {
        if members.eligible(view, i) {
            continue;
        }
        let flags: HealthFlags = members.get(i).state.health();
        if flags.contains(Unhealthy::Drained) {
            out.drained += 1;
        } else if flags.contains(Unhealthy::Ejected) {
            out.ejected += 1;
        } else {
            out.unhealthy += 1;
        }
    }
    out
}

/// Fills a hashing policy's part of `e`: the endpoint the hash maps to (`home`, the walk's first
/// step), the endpoints walked past until `e.picked`, and their in-flight counts.
pub(crate) fn walked(e: &mut Explanation, members: &Members, walk: impl Iterator<Item = usize>) {
    let picked = e.picked;
    let mut reached = false;
    for i in walk.take(MAX_LISTED) {
        if e.home.is_none() {
            e.home = Some(i);
        }
        if i == picked {
            reached = true;
            break;
        }
        if !e.walked.contains(&i) {
            e.walked.push(i);
        }
    }
    if !reached {
        e.note = Some("no endpoint on the walk could take it: scanned for one");
    }
    e.score = "in_flight";
    let listed = e.walked.iter().copied().chain(std::iter::once(picked));
    e.candidates = listed.map(|i| in_flight(members, i)).collect();
}

/// Endpoint `i` with its in-flight count as the score.
pub(crate) fn in_flight(members: &Members, i: usize) -> Candidate {
    Candidate {
        index: i,
        score: members.get(i).state.in_flight() as f64,
    }
}

/// At most this many endpoints are listed (walks, full scans).
pub(crate) const MAX_LISTED: usize = 16;
