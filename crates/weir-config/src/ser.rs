//! `Serialize` for the schema types whose YAML form is hand-parsed, so a [`crate::Config`] can be
//! shown as JSON (the admin API's `GET /config`).
//!
//! Each type is written back in a form its `Deserialize` accepts — the canonical one where it
//! takes several: durations as `30s`, status ranges as `200` or `"200-299"`, endpoints as
//! `{address, weight}` maps, networks as CIDR strings. Everything else derives `Serialize` next
//! to its `Deserialize`, with the same field names.

use serde::Serialize;
use serde::ser::{SerializeStruct, Serializer};

use crate::{
    ChoiceCount, CidrList, ConfigDuration, ConfigNumber, EndpointConfig, RetryOn, StatusRange,
    StringMatchConfig,
};

impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Serialize for RetryOn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            // A bare code is written as a number in YAML; keep it one.
            Self::Status(code) => s.serialize_u16(*code),
            other => s.collect_str(other),
        }
    }
}

impl Serialize for StatusRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.start == self.end {
            s.serialize_u16(self.start)
        } else {
            s.collect_str(self)
        }
    }
}

impl Serialize for ChoiceCount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Sample(n) => s.serialize_u32(*n),
            Self::All => s.serialize_str("all"),
        }
    }
}

impl Serialize for ConfigNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.get())
    }
}

impl Serialize for EndpointConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_struct("EndpointConfig", 2)?;
        map.serialize_field("address", &self.address)?;
        map.serialize_field("weight", &self.weight)?;
        map.end()
    }
}

impl Serialize for CidrList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(ToString::to_string))
    }
}

impl Serialize for StringMatchConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Exact(text) => s.serialize_str(text),
            Self::Rule(rule) => rule.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn a_config_serializes_in_forms_it_would_load_from() {
        let config = crate::load_str(
            r#"admin: { address: 127.0.0.1:9901, token: 0123456789abcdef }
listeners:
  - name: web
    address: 127.0.0.1:8080
    routes:
      - match: { path_prefix: /, headers: { x-env: prod } }
        cluster: c
        retry: { attempts: 2, on: [5xx, 503] }
clusters:
  - name: c
    lb_policy: least_request
    least_request: { choice_count: all }
    health_check: { http: { expected_statuses: [200, "300-399"] } }
    endpoints: [ 127.0.0.1:9001, { address: 127.0.0.1:9002, weight: 2 } ]
"#,
            "t.yaml",
        )
        .unwrap();
        let v = serde_json::to_value(config.config()).unwrap();
        assert_eq!(
            v["admin"]["token"], "0123456789abcdef",
            "redaction is the admin API's job"
        );
        let c = &v["clusters"][0];
        assert_eq!(
            c["endpoints"],
            json!([
                { "address": "127.0.0.1:9001", "weight": 1 },
                { "address": "127.0.0.1:9002", "weight": 2 }
            ])
        );
        assert_eq!(c["connect_timeout"], "1s", "defaults are filled in");
        assert_eq!(c["least_request"]["choice_count"], "all");
        assert_eq!(
            c["health_check"]["http"]["expected_statuses"],
            json!([200, "300-399"])
        );
        let route = &v["listeners"][0]["routes"][0];
        assert_eq!(route["match"]["path_prefix"], "/");
        assert_eq!(route["match"]["headers"]["x-env"], "prod");
        assert_eq!(route["retry"]["on"], json!(["5xx", 503]));
    }
}
