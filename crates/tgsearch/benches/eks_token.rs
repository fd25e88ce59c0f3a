//! Signing an EKS token in-process: the cost the 2018 design paid 750 ms to 2 s for (an
//! aws-iam-authenticator subprocess).

use std::time::SystemTime;

use aws_credential_types::Credentials;
use criterion::{Criterion, criterion_group, criterion_main};
use tgsearch::eks::sign_token;
use tgsearch::eks::verify::check_token;

fn signing(c: &mut Criterion) {
    let creds = Credentials::new(
        "ASIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("IQoJb3JpZ2luX2VjEXAMPLE".into()),
        None,
        "bench",
    );
    c.bench_function("sign_token", |b| {
        b.iter(|| sign_token("tgsearch", "eu-west-1", &creds, SystemTime::now()).unwrap())
    });
    let token = sign_token("tgsearch", "eu-west-1", &creds, SystemTime::now())
        .unwrap()
        .token;
    c.bench_function("check_token", |b| {
        b.iter(|| check_token(&token, SystemTime::now()).unwrap())
    });
}

criterion_group!(benches, signing);
criterion_main!(benches);
