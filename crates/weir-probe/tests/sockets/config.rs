//! Health check configs for the socket tests.

use std::time::Duration;

use weir_config::{
    ConfigDuration, GrpcCheckConfig, HealthCheckConfig, HttpCheckConfig, TcpCheckConfig,
    UdpCheckConfig,
};

/// A check with no probe yet: every 50ms, rise 2, fall 2, no jitter, a 1s timeout.
pub(crate) fn base() -> HealthCheckConfig {
    HealthCheckConfig {
        interval: ConfigDuration(Duration::from_millis(50)),
        unhealthy_interval: None,
        timeout: ConfigDuration(Duration::from_secs(1)),
        jitter: ConfigDuration(Duration::ZERO),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        skip_when_traffic_healthy: false,
        start_healthy: false,
        http: None,
        tcp: None,
        grpc: None,
        udp: None,
    }
}

/// `base()` with `timeout`.
pub(crate) fn with_timeout(mut config: HealthCheckConfig, timeout: Duration) -> HealthCheckConfig {
    config.timeout = ConfigDuration(timeout);
    config
}

/// An HTTP check.
pub(crate) fn http(http: HttpCheckConfig) -> HealthCheckConfig {
    HealthCheckConfig {
        http: Some(http),
        ..base()
    }
}

/// A TCP check.
pub(crate) fn tcp(send: Option<&str>, expect: Option<&str>) -> HealthCheckConfig {
    HealthCheckConfig {
        tcp: Some(TcpCheckConfig {
            send: send.map(str::to_owned),
            expect: expect.map(str::to_owned),
        }),
        ..base()
    }
}

/// A gRPC check of `service`.
pub(crate) fn grpc(service: &str, authority: Option<&str>) -> HealthCheckConfig {
    HealthCheckConfig {
        grpc: Some(GrpcCheckConfig {
            service: service.to_owned(),
            authority: authority.map(str::to_owned),
        }),
        ..base()
    }
}

/// A UDP check.
pub(crate) fn udp(send: &str, expect: Option<&str>) -> HealthCheckConfig {
    HealthCheckConfig {
        udp: Some(UdpCheckConfig {
            send: send.to_owned(),
            expect: expect.map(str::to_owned),
        }),
        ..base()
    }
}
