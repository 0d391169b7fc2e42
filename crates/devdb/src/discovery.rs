//! Finding the cluster's primary: every node answers `GET /_devdb/primary` with what it knows
//! (its role and term, and the primary it follows or learned of), and a node that needs the
//! primary asks the peers it knows and takes the highest term.
//!
//! Replicas use it when their primary stops answering or refuses them; a primary uses it to
//! learn that a newer term exists (and then fences itself); a promotion uses it to pick a term
//! above every term any reachable node knows.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};

use crate::server::App;
use crate::state::{MAX_TERM, NodeState, Role, TermStart};

/// How long one node may take to answer: peers are on the same machine or a region away, and
/// a survey must not hold up a failover behind one dead address.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// A node's claim about who the primary is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrimaryRef {
    /// `None` when a fenced node knows a newer term exists but not where.
    pub url: Option<String>,
    pub term: u64,
}

/// What `GET /_devdb/primary` answers: this node's place in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub cluster: String,
    /// The node's own URL, as it advertises it.
    pub url: String,
    /// `primary`, `replica` or `fenced`.
    pub role: String,
    /// See [`NodeState::term`].
    pub term: u64,
    #[serde(with = "crate::proto::u64_as_str")]
    pub replication_index: u64,
    /// The primary this node writes as, follows, or was fenced by.
    pub primary: Option<PrimaryRef>,
    /// The terms of this node's history and the index each began after.
    pub terms: Vec<TermStart>,
    /// Replica: why it stopped following, if it did.
    pub diverged: Option<String>,
}

impl NodeView {
    pub fn of(app: &App) -> Self {
        let node = app.shared.node();
        let primary = match &node.role {
            Role::Primary => PrimaryRef { url: Some(app.url.clone()), term: node.term },
            Role::Replica { primary_url } => PrimaryRef { url: Some(primary_url.clone()), term: node.term },
            Role::Fenced { by_term, primary_url } => PrimaryRef { url: primary_url.clone(), term: *by_term },
        };
        Self {
            cluster: node.cluster.clone(),
            url: app.url.clone(),
            role: node.role.name().to_owned(),
            term: node.term,
            replication_index: app.shared.index(),
            primary: Some(primary),
            terms: node.terms,
            diverged: app.shared.diverged(),
        }
    }

    fn is_primary(&self) -> bool {
        self.role == Role::Primary.name()
    }
}

/// The URLs a node asks about the primary: its peers, the primary it was configured with and
/// the one it follows.
pub fn candidates(app: &App, node: &NodeState) -> Vec<String> {
    let mut urls = node.peers.clone();
    urls.extend(app.configured_primary.clone());
    if let Role::Replica { primary_url } | Role::Fenced { primary_url: Some(primary_url), .. } = &node.role {
        urls.push(primary_url.clone());
    }
    urls
}

/// One node's view, or why it could not be had.
pub async fn ask(app: &App, url: &str) -> Result<NodeView, String> {
    let mut req = app.http.get(format!("{}/_devdb/primary", url.trim_end_matches('/'))).timeout(ASK_TIMEOUT);
    if let Some(t) = &app.token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("answered {}", resp.status()));
    }
    let view: NodeView = resp.json().await.map_err(|e| format!("not a devdb node: {e}"))?;
    // A claim no devdb makes: believing it would fence this node for good, or leave no term to
    // promote to.
    let claimed = view.primary.as_ref().map_or(0, |p| p.term).max(view.term);
    if claimed > MAX_TERM {
        return Err(format!("claims term {claimed}, above the largest devdb accepts ({MAX_TERM})"));
    }
    Ok(view)
}

/// The answers of every node asked.
#[derive(Debug, Default)]
pub struct Survey {
    pub views: Vec<NodeView>,
    /// The URL each view was asked at (in the same order): a node may be reached under another
    /// name than the one it advertises (a proxy, a hostname).
    pub asked: Vec<String>,
}

/// The highest term some node claims exists, and where its primary is if known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub term: u64,
    pub url: Option<String>,
}

/// Asks every URL (but this node) at once, then the primaries their answers name that were not
/// asked yet, so a node one hop from the new primary still finds it.
pub async fn survey(app: &App, urls: impl IntoIterator<Item = String>) -> Survey {
    let mut asked: BTreeSet<String> = BTreeSet::from([app.url.clone()]);
    let mut next: Vec<String> = urls.into_iter().map(|u| u.trim_end_matches('/').to_owned()).collect();
    let mut survey = Survey::default();
    for _round in 0..2 {
        next.retain(|u| asked.insert(u.clone()));
        if next.is_empty() {
            break;
        }
        let answers = join_all(next.iter().map(|u| ask(app, u))).await;
        let found: Vec<(String, NodeView)> =
            next.iter().cloned().zip(answers).filter_map(|(url, answer)| Some((url, answer.ok()?))).collect();
        next = found.iter().filter_map(|(_, v)| v.primary.as_ref().and_then(|p| p.url.clone())).collect();
        for (url, view) in found {
            survey.asked.push(url);
            survey.views.push(view);
        }
    }
    survey
}

impl Survey {
    /// Views from `cluster` (every view while this node has not learned its cluster yet).
    fn of_cluster<'a>(&'a self, cluster: &str) -> impl Iterator<Item = &'a NodeView> + 'a {
        let cluster = cluster.to_owned();
        self.views.iter().filter(move |v| cluster.is_empty() || v.cluster == cluster)
    }

    /// The highest term any node of the cluster holds or claims.
    pub fn highest_term(&self, cluster: &str) -> Option<Claim> {
        self.of_cluster(cluster)
            .flat_map(|v| {
                let own = Claim { term: v.term, url: v.is_primary().then(|| v.url.clone()) };
                let claimed = v.primary.as_ref().map(|p| Claim { term: p.term, url: p.url.clone() });
                [Some(own), claimed]
            })
            .flatten()
            .max_by_key(|c| (c.term, c.url.is_some()))
    }

    /// The primary to follow: the one with the highest term; between two primaries of one
    /// term (promoted at the same moment), the lower URL, as every node decides alike.
    pub fn primary(&self, cluster: &str) -> Option<&NodeView> {
        self.of_cluster(cluster).filter(|v| v.is_primary()).max_by_key(|v| (v.term, Reverse(v.url.as_str())))
    }

    /// Whether the node asked at `url` is `view`'s node (it may advertise another URL).
    pub fn reached_at(&self, url: &str, view: &NodeView) -> bool {
        self.asked.iter().zip(&self.views).any(|(asked, v)| asked == url && v.url == view.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(url: &str, cluster: &str, role: Role, term: u64) -> NodeView {
        let primary = match &role {
            Role::Primary => PrimaryRef { url: Some(url.into()), term },
            Role::Replica { primary_url } => PrimaryRef { url: Some(primary_url.clone()), term },
            Role::Fenced { by_term, primary_url } => PrimaryRef { url: primary_url.clone(), term: *by_term },
        };
        NodeView {
            cluster: cluster.into(),
            url: url.into(),
            role: role.name().into(),
            term,
            replication_index: 0,
            primary: Some(primary),
            terms: Vec::new(),
            diverged: None,
        }
    }

    #[test]
    fn the_highest_term_wins_and_other_clusters_do_not_count() {
        let survey = Survey {
            views: vec![
                view("http://old", "c", Role::Fenced { by_term: 3, primary_url: None }, 1),
                view("http://a", "c", Role::Primary, 2),
                view("http://r", "c", Role::Replica { primary_url: "http://a".into() }, 2),
                view("http://stranger", "other", Role::Primary, 9),
            ],
            asked: vec!["http://old".into(), "http://proxy-to-a".into(), "http://r".into(), "http://stranger".into()],
        };
        assert_eq!(survey.highest_term("c"), Some(Claim { term: 3, url: None }));
        assert_eq!(survey.primary("c").map(|v| v.url.as_str()), Some("http://a"));
        assert_eq!(survey.primary("").map(|v| v.url.as_str()), Some("http://stranger"), "no cluster yet: any");
        let a = survey.primary("c").unwrap();
        assert!(survey.reached_at("http://proxy-to-a", a) && !survey.reached_at("http://r", a));
    }

    #[test]
    fn two_primaries_of_one_term_resolve_to_the_lower_url_everywhere() {
        let a = view("http://a", "c", Role::Primary, 2);
        let b = view("http://b", "c", Role::Primary, 2);
        let one = Survey { views: vec![a.clone(), b.clone()], asked: Vec::new() };
        let other = Survey { views: vec![b, a], asked: Vec::new() };
        assert_eq!(one.primary("c").map(|v| v.url.clone()), Some("http://a".into()));
        assert_eq!(other.primary("c").map(|v| v.url.clone()), Some("http://a".into()));
    }
}
