//! Catalog case 119: text from outside — a producer's parameter name, a server's error message
//! — never splits a stored error or a log line. Every error text the database keeps is one
//! printable line: control characters are escaped before they are stored (log lines are one
//! line per event by `telemetry::OneLineFields`, tested in `src/telemetry.rs`).

use std::time::Duration;

use jbxd::db::url_queue::{Applied, UrlDecision};
use jbxd::db::{self, ItemState};
use jbxd::intake::urls;
use jbxd::simulator::{Fault, FaultRule, SimConfig};
use jbxd::testing::{TestEnv, all_terminal, drive_until};

fn one_printable_line(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

#[tokio::test]
async fn case_119_a_parameter_name_with_cr_lf_is_rejected_with_a_one_line_reason() {
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let app = &env.app;
    let row = db::url_queue::insert(
        &app.db,
        "https://example.com/",
        Some("{\"bad\\r\\nINFO jbxd: forged\": 1}"),
    )
    .await
    .unwrap();
    urls::run_once(app).await.unwrap();
    let (status, error): (String, Option<String>) =
        sqlx::query_as("SELECT status, error FROM url_queue WHERE id = ?")
            .bind(row)
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!(status, "rejected");
    let error = error.expect("a reason");
    assert!(one_printable_line(&error), "{error:?}");
    assert!(error.contains("bad\\r\\nINFO jbxd: forged"), "{error:?}");
}

#[tokio::test]
async fn case_119_a_server_message_with_cr_lf_is_stored_as_one_line() {
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let app = &env.app;
    env.sim.faults().add(FaultRule::times(
        Some("submission/new"),
        Fault::Error {
            http_status: 400,
            code: 2,
            message: "Missing parameter.\r\nINFO jbxd: item 1 done\u{1b}[2K".into(),
        },
        1,
    ));
    let row = db::url_queue::insert(&app.db, "https://example.com/", None)
        .await
        .unwrap();
    let decision = UrlDecision::Accept {
        url: "https://example.com/".into(),
        params: None,
        force: false,
    };
    let Applied::Queued(id) = db::url_queue::apply(&app.db, &[(row, decision)], 0)
        .await
        .unwrap()[0]
    else {
        panic!("not queued");
    };
    drive_until(app, Duration::from_secs(20), all_terminal).await;
    let item = db::items::get(&app.db, id).await.unwrap().unwrap();
    assert_eq!(item.state, ItemState::Rejected, "{item:?}");
    let error = item.error.expect("the server's reason");
    assert!(one_printable_line(&error), "{error:?}");
    assert!(error.contains("Missing parameter.\\r\\nINFO"), "{error:?}");
    let (queue_error,): (Option<String>,) =
        sqlx::query_as("SELECT error FROM url_queue WHERE id = ?")
            .bind(row)
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert!(one_printable_line(&queue_error.unwrap_or_default()));
}
