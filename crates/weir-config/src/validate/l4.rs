//! Rules for what each listener protocol needs: HTTP listeners have routes, TCP and UDP
//! listeners a cluster, TLS passthrough listeners SNI routes or a default cluster; and the L4
//! options stay in range.

use super::{Checker, route, syntax};
use crate::path::YamlPath;
use crate::{ListenerConfig, ListenerProtocol};

// === impl Checker ===

impl Checker<'_> {
    /// Checks the protocol-specific keys of `listener` at `path`.
    pub(super) fn listener_protocol(
        &mut self,
        listener: &ListenerConfig,
        path: &YamlPath,
        clusters: &[&str],
    ) {
        let protocol = listener.protocol;
        let name = protocol_name(protocol);
        let misplaced = |key: &str, given: bool| given.then(|| key.to_owned());
        let not_for_this: Vec<String> = match protocol {
            ListenerProtocol::Http => [
                misplaced("cluster", listener.cluster.is_some()),
                misplaced("sni", !listener.sni.is_empty()),
                misplaced("default_cluster", listener.default_cluster.is_some()),
                misplaced("proxy_protocol", listener.proxy_protocol.is_some()),
            ]
            .into_iter()
            .flatten()
            .collect(),
            ListenerProtocol::Tcp | ListenerProtocol::Udp => [
                misplaced("routes", !listener.routes.is_empty()),
                misplaced("sni", !listener.sni.is_empty()),
                misplaced("default_cluster", listener.default_cluster.is_some()),
                misplaced("tls", listener.tls.is_some()),
                misplaced(
                    "proxy_protocol",
                    protocol == ListenerProtocol::Udp && listener.proxy_protocol.is_some(),
                ),
            ]
            .into_iter()
            .flatten()
            .collect(),
            ListenerProtocol::TlsPassthrough => [
                misplaced("routes", !listener.routes.is_empty()),
                misplaced("cluster", listener.cluster.is_some()),
                misplaced("tls", listener.tls.is_some()),
            ]
            .into_iter()
            .flatten()
            .collect(),
            ListenerProtocol::Xdp | ListenerProtocol::Nftables => [
                misplaced("routes", !listener.routes.is_empty()),
                misplaced("sni", !listener.sni.is_empty()),
                misplaced("default_cluster", listener.default_cluster.is_some()),
                misplaced("tls", listener.tls.is_some()),
                misplaced("proxy_protocol", listener.proxy_protocol.is_some()),
                misplaced("rate_limit", listener.rate_limit.is_some()),
            ]
            .into_iter()
            .flatten()
            .collect(),
        };
        for key in not_for_this {
            self.report(
                &path.key(&key),
                format!("`{key}` does not apply to a `{name}` listener"),
                hint_for(protocol),
            );
        }
        match protocol {
            ListenerProtocol::Http => {}
            ListenerProtocol::Tcp
            | ListenerProtocol::Udp
            | ListenerProtocol::Xdp
            | ListenerProtocol::Nftables => match &listener.cluster {
                Some(c) => route::cluster_ref(self, c, &path.key("cluster"), clusters),
                None => self.report(
                    path,
                    format!("a `{name}` listener needs a `cluster` to forward to"),
                    "add `cluster: <name>`",
                ),
            },
            ListenerProtocol::TlsPassthrough => self.sni_routes(listener, path, clusters),
        }
        if matches!(
            protocol,
            ListenerProtocol::Tcp | ListenerProtocol::TlsPassthrough
        ) {
            let p = path.key("tcp");
            let t = &listener.tcp;
            for (key, zero) in [
                ("idle_timeout", t.idle_timeout.get().is_zero()),
                ("first_bytes_timeout", t.first_bytes_timeout.get().is_zero()),
                ("max_connections", t.max_connections == 0),
                ("connect_attempts", t.connect_attempts == 0),
            ] {
                if zero {
                    self.report(
                        &p.key(key),
                        format!("{key} is 0"),
                        "give a positive value; see docs/l4.md for defaults",
                    );
                }
            }
        }
        if protocol == ListenerProtocol::Udp {
            let p = path.key("udp");
            if listener.udp.max_sessions == 0 {
                self.report(
                    &p.key("max_sessions"),
                    "max_sessions is 0",
                    "give a positive bound, e.g. 10000",
                );
            }
            if listener.udp.idle_timeout.get().is_zero() {
                self.report(
                    &p.key("idle_timeout"),
                    "idle_timeout is 0",
                    "give a duration such as 60s",
                );
            }
        }
        if let Some(pp) = &listener.proxy_protocol
            && pp.trusted.0.is_empty()
        {
            self.report(
                &path.key("proxy_protocol").key("trusted"),
                "proxy_protocol.trusted is empty, so no peer could send a PROXY header",
                "list the load balancers in front of weir, e.g. [10.0.0.0/8]",
            );
        }
    }

    fn sni_routes(&mut self, listener: &ListenerConfig, path: &YamlPath, clusters: &[&str]) {
        if listener.sni.is_empty() && listener.default_cluster.is_none() {
            self.report(
                path,
                "a `tls_passthrough` listener needs `sni` routes or a `default_cluster`",
                "add `sni: [ { server_names: [api.example.com], cluster: api } ]`",
            );
        }
        for (i, r) in listener.sni.iter().enumerate() {
            let p = path.key("sni").index(i);
            if r.server_names.is_empty() {
                self.report(
                    &p.key("server_names"),
                    "server_names is empty",
                    "list at least one name",
                );
            }
            for (j, name) in r.server_names.iter().enumerate() {
                if let Err(problem) = syntax::check_host(name) {
                    self.report(
                        &p.key("server_names").index(j),
                        problem.message,
                        problem.hint,
                    );
                }
            }
            route::cluster_ref(self, &r.cluster, &p.key("cluster"), clusters);
        }
        if let Some(c) = &listener.default_cluster {
            route::cluster_ref(self, c, &path.key("default_cluster"), clusters);
        }
    }

    /// `http.debug_trusted` only means something on an HTTP listener, and must not trust
    /// everyone: the decision record names endpoint addresses and their load.
    pub(super) fn debug_trusted(&mut self, listener: &ListenerConfig, path: &YamlPath) {
        let nets = &listener.http.debug_trusted.0;
        if nets.is_empty() {
            return;
        }
        if listener.protocol != ListenerProtocol::Http {
            self.report(
                path,
                format!(
                    "`http.debug_trusted` does not apply to a `{}` listener",
                    protocol_name(listener.protocol)
                ),
                "the decision record is an HTTP response header; remove the key",
            );
            return;
        }
        if let Some(net) = nets.iter().find(|n| n.prefix_len() == 0) {
            self.report(
                path,
                format!("debug_trusted {net} trusts every client with the decision record"),
                "list the operators' networks, e.g. [ 127.0.0.1, 10.1.0.0/16 ]",
            );
        }
    }
}

fn protocol_name(p: ListenerProtocol) -> &'static str {
    match p {
        ListenerProtocol::Http => "http",
        ListenerProtocol::Tcp => "tcp",
        ListenerProtocol::Udp => "udp",
        ListenerProtocol::TlsPassthrough => "tls_passthrough",
        ListenerProtocol::Xdp => "xdp",
        ListenerProtocol::Nftables => "nftables",
    }
}

fn hint_for(p: ListenerProtocol) -> &'static str {
    match p {
        ListenerProtocol::Http => "http listeners use `routes`; remove the key",
        ListenerProtocol::Tcp => "tcp listeners use `cluster` and `tcp` options; remove the key",
        ListenerProtocol::Udp => "udp listeners use `cluster` and `udp` options; remove the key",
        ListenerProtocol::TlsPassthrough => {
            "tls_passthrough listeners use `sni`, `default_cluster` and `tcp` options; remove the key"
        }
        ListenerProtocol::Xdp => "xdp listeners use `cluster` and `xdp` options; remove the key",
        ListenerProtocol::Nftables => {
            "nftables listeners use `cluster` and `nftables` options; remove the key"
        }
    }
}
