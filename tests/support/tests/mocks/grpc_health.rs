//! `GrpcHealth` through the `tonic-health` client: statuses per service, switched at run time.

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use weir_test_support::GrpcHealth;
use weir_test_support::tonic::Code;
use weir_test_support::tonic::transport::Channel;

async fn status(client: &mut HealthClient<Channel>, service: &str) -> Result<ServingStatus, Code> {
    let request = HealthCheckRequest {
        service: service.to_owned(),
    };
    match client.check(request).await {
        Ok(response) => Ok(ServingStatus::try_from(response.into_inner().status).unwrap()),
        Err(status) => Err(status.code()),
    }
}

#[tokio::test]
async fn reports_serving_until_switched_per_service() {
    let server = GrpcHealth::start().await;
    let channel = Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    assert_eq!(status(&mut client, "").await, Ok(ServingStatus::Serving));
    let named = GrpcHealth::SERVICE;
    assert_eq!(status(&mut client, named).await, Ok(ServingStatus::Serving));
    assert_eq!(status(&mut client, "no.Such").await, Err(Code::NotFound));

    server.set_serving(named, false).await;
    assert_eq!(
        status(&mut client, named).await,
        Ok(ServingStatus::NotServing)
    );
    assert_eq!(status(&mut client, "").await, Ok(ServingStatus::Serving));
    server.set_serving(named, true).await;
    assert_eq!(status(&mut client, named).await, Ok(ServingStatus::Serving));
    assert_eq!(server.connections(), 1);
    server.shutdown().await;
}
