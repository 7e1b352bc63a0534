//! The semantic rules: everything serde's types cannot say on their own.
//!
//! Names must be unique, routes must name clusters that exist, ranges must hold, patterns must
//! compile. The walk visits the whole [`Config`] and records every problem with its YAML path
//! (and, when the config came from a file, its line), so one edit round can fix them all.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::path::YamlPath;
use crate::yaml::Node;
use crate::{
    ClusterConfig, Config, ConfigError, EndpointConfig, HttpOptionsConfig, ListenerConfig,
};

mod affinity;
mod balancing;
mod discovery;
mod health;
mod l4;
mod observability;
mod rate_limit;
mod retry;
mod route;
mod shutdown;
mod syntax;
mod tls;
mod traffic;
mod xdp;

/// Endpoint weights outside this range are rejected.
pub const MAX_ENDPOINT_WEIGHT: u32 = 10_000;

/// Collects problems while walking a config.
pub(crate) struct Checker<'a> {
    file: &'a str,
    tree: Option<&'a Node>,
    errors: Vec<ConfigError>,
}

/// What first claimed a listener address, for the duplicate message.
struct AddressOwner {
    path: YamlPath,
    description: String,
    /// UDP and TCP sockets on the same address do not clash.
    udp: bool,
}

/// Checks every semantic rule; `tree` (when the config came from YAML) supplies line numbers.
pub(crate) fn check(config: &Config, tree: Option<&Node>, file: &str) -> Vec<ConfigError> {
    let mut checker = Checker {
        file,
        tree,
        errors: Vec::new(),
    };
    checker.listeners(config);
    checker.xdp_listeners(config);
    checker.clusters(&config.clusters);
    rate_limit::check(&mut checker, config);
    observability::check(&mut checker, config);
    shutdown::check(&mut checker, config);
    checker.errors
}

/// Checks an endpoints file's list (file discovery) by the rules of a cluster's `endpoints`.
pub(crate) fn check_endpoints_file(
    endpoints: &[EndpointConfig],
    tree: Option<&Node>,
    file: &str,
) -> Vec<ConfigError> {
    let mut checker = Checker {
        file,
        tree,
        errors: Vec::new(),
    };
    checker.endpoints(
        endpoints,
        "the endpoints file",
        &YamlPath::root().key("endpoints"),
    );
    checker.errors
}

// === impl Checker ===

impl Checker<'_> {
    /// Records a problem at `path`.
    fn report(&mut self, path: &YamlPath, message: impl Into<String>, hint: impl Into<String>) {
        let line = self.tree.map(|tree| tree.line_of(path));
        self.errors.push(ConfigError::new(
            self.file,
            path,
            line,
            message,
            Some(hint.into()),
        ));
    }

    /// `line N` when the config came from a file, else the path: for "first defined at".
    fn locate(&self, path: &YamlPath) -> String {
        match self.tree {
            Some(tree) => format!("line {}", tree.line_of(path)),
            None => path.to_string(),
        }
    }

    /// Checks that `name` is non-empty and not already in `seen`, then records it.
    fn unique_name<'c>(
        &mut self,
        kind: &str,
        name: &'c str,
        path: YamlPath,
        seen: &mut HashMap<&'c str, YamlPath>,
    ) {
        if name.trim().is_empty() {
            self.report(
                &path,
                format!("{kind} name is empty"),
                format!("give every {kind} a unique, non-empty name"),
            );
        } else if let Some(first) = seen.get(name) {
            let first = self.locate(first);
            self.report(
                &path,
                format!("duplicate {kind} name {name:?} (first defined at {first})"),
                format!("{kind} names must be unique; rename one of them"),
            );
        } else {
            seen.insert(name, path);
        }
    }

    fn listeners(&mut self, config: &Config) {
        let clusters: Vec<&str> = config.clusters.iter().map(|c| c.name.as_str()).collect();
        let mut names = HashMap::new();
        let mut addresses: Vec<(SocketAddr, AddressOwner)> = Vec::new();
        if let Some(token) = config.admin.as_ref().and_then(|a| a.token.as_ref())
            && (token.len() < 16 || !token.chars().all(|c| c.is_ascii_graphic()))
        {
            self.report(
                &YamlPath::root().key("admin").key("token"),
                "the admin token must be at least 16 visible ASCII characters",
                "generate one, e.g. `openssl rand -hex 24`",
            );
        }
        if let Some(admin) = &config.admin {
            addresses.push((
                admin.address,
                AddressOwner {
                    path: YamlPath::root().key("admin").key("address"),
                    description: "the admin endpoint".to_owned(),
                    udp: false,
                },
            ));
        }
        for (i, listener) in config.listeners.iter().enumerate() {
            let path = YamlPath::root().key("listeners").index(i);
            self.unique_name("listener", &listener.name, path.key("name"), &mut names);
            // An `xdp` listener's address is a VIP the kernel balances, not a bound socket.
            if !matches!(
                listener.protocol,
                crate::ListenerProtocol::Xdp | crate::ListenerProtocol::Nftables
            ) {
                self.listener_address(listener, &path, &mut addresses);
            }
            self.http_options(&listener.http, &path.key("http"));
            self.debug_trusted(listener, &path.key("http").key("debug_trusted"));
            self.listener_protocol(listener, &path, &clusters);
            if let Some(tls) = &listener.tls {
                self.listener_tls(tls, &path.key("tls"));
            }
            let routes = path.key("routes");
            for (j, route) in listener.routes.iter().enumerate() {
                route::check(self, route, &routes.index(j), &clusters);
                traffic::check(self, route, &routes.index(j), &clusters);
            }
        }
    }

    fn listener_address(
        &mut self,
        listener: &ListenerConfig,
        path: &YamlPath,
        claimed: &mut Vec<(SocketAddr, AddressOwner)>,
    ) {
        let address = listener.address;
        let path = path.key("address");
        let udp = listener.protocol == crate::ListenerProtocol::Udp;
        if let Some((_, owner)) = claimed
            .iter()
            .find(|(a, owner)| owner.udp == udp && addresses_clash(*a, address))
        {
            let message = format!(
                "listener address {address} is already used by {} ({})",
                owner.description,
                self.locate(&owner.path)
            );
            self.report(
                &path,
                message,
                "every listener needs its own address; port 0 picks a free port",
            );
            return;
        }
        claimed.push((
            address,
            AddressOwner {
                path,
                description: format!("listener {:?}", listener.name),
                udp,
            },
        ));
    }

    fn http_options(&mut self, http: &HttpOptionsConfig, path: &YamlPath) {
        let timeouts = [
            ("header_read_timeout", http.header_read_timeout),
            ("idle_timeout", http.idle_timeout),
            ("stream_idle_timeout", http.stream_idle_timeout),
        ];
        for (key, value) in timeouts {
            if value.get().is_zero() {
                self.report(
                    &path.key(key),
                    format!("{key} is 0"),
                    "give a positive duration such as 10s",
                );
            }
        }
        let limits = [
            ("max_request_headers_bytes", http.max_request_headers_bytes),
            ("max_request_headers", http.max_request_headers),
            ("max_concurrent_streams", http.max_concurrent_streams),
        ];
        for (key, value) in limits {
            if value == 0 {
                self.report(
                    &path.key(key),
                    format!("{key} is 0; no request could be served"),
                    "give a positive number (or leave it out for the default)",
                );
            }
        }
        if let Some(via) = &http.via
            && !syntax::is_token(via)
        {
            self.report(
                &path.key("via"),
                format!("via {via:?} is not a valid token"),
                "use a single word without spaces or separators, e.g. weir",
            );
        }
    }

    fn clusters(&mut self, clusters: &[ClusterConfig]) {
        let mut names = HashMap::new();
        for (i, cluster) in clusters.iter().enumerate() {
            let path = YamlPath::root().key("clusters").index(i);
            self.unique_name("cluster", &cluster.name, path.key("name"), &mut names);
            if cluster.connect_timeout.get().is_zero() {
                self.report(
                    &path.key("connect_timeout"),
                    "connect_timeout is 0; no connection could be made",
                    "give a positive duration such as 1s",
                );
            }
            self.endpoints(
                &cluster.endpoints,
                &format!("cluster {:?}", cluster.name),
                &path.key("endpoints"),
            );
            if let Some(tls) = &cluster.tls {
                self.cluster_tls(tls, &path.key("tls"));
            }
            self.balancing(cluster, &path);
            if let Some(affinity) = &cluster.session_affinity {
                self.session_affinity(affinity, &path.key("session_affinity"));
            }
            self.health(cluster, &path);
            self.retry_budget(cluster, &path);
            self.discovery(cluster, &path);
            let cb = &cluster.circuit_breakers;
            for (key, value) in [
                ("max_connections", cb.max_connections),
                ("max_pending_requests", cb.max_pending_requests),
                ("max_requests", cb.max_requests),
            ] {
                if value == 0 {
                    self.report(
                        &path.key("circuit_breakers").key(key),
                        format!("{key} is 0, so no request could ever pass"),
                        "give a positive limit; the default is 1024",
                    );
                }
            }
        }
    }

    /// Checks an endpoint list (of `owner`, named in messages) at `path`: weights in range, a
    /// real port, each address once.
    fn endpoints(&mut self, endpoints: &[EndpointConfig], owner: &str, path: &YamlPath) {
        let mut seen: HashMap<SocketAddr, YamlPath> = HashMap::new();
        for (k, endpoint) in endpoints.iter().enumerate() {
            let path = path.index(k);
            if !(1..=MAX_ENDPOINT_WEIGHT).contains(&endpoint.weight) {
                self.report(
                    &path.key("weight"),
                    format!("endpoint weight {} is out of range", endpoint.weight),
                    format!("use a weight from 1 to {MAX_ENDPOINT_WEIGHT}; remove the endpoint to send it no traffic"),
                );
            }
            if endpoint.address.port() == 0 {
                self.report(
                    &path,
                    format!("endpoint address {} has port 0", endpoint.address),
                    "give the port the endpoint listens on, e.g. 127.0.0.1:9001",
                );
            }
            if let Some(first) = seen.get(&endpoint.address) {
                let first = self.locate(first);
                self.report(
                    &path,
                    format!(
                        "endpoint {} is listed twice in {owner} (first at {first})",
                        endpoint.address
                    ),
                    "list each address once and raise its weight instead",
                );
            } else {
                seen.insert(endpoint.address, path);
            }
        }
    }
}

/// Whether two listeners could not both bind: the same address, or the same port where one of
/// them is the wildcard address of the same family. Port 0 never clashes.
fn addresses_clash(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() || a.port() == 0 {
        return false;
    }
    a.ip() == b.ip()
        || (a.is_ipv4() == b.is_ipv4() && (a.ip().is_unspecified() || b.ip().is_unspecified()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_addresses_clash_with_their_family() {
        let addr = |s: &str| match s.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(e) => panic!("{s}: {e}"),
        };
        assert!(addresses_clash(addr("127.0.0.1:80"), addr("127.0.0.1:80")));
        assert!(addresses_clash(addr("0.0.0.0:80"), addr("127.0.0.1:80")));
        assert!(!addresses_clash(addr("127.0.0.1:80"), addr("127.0.0.2:80")));
        assert!(!addresses_clash(addr("127.0.0.1:0"), addr("127.0.0.1:0")));
        assert!(!addresses_clash(addr("[::]:80"), addr("127.0.0.1:80")));
    }
}
