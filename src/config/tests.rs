//! Tests of loading, layering, environment overrides, validation and the
//! conversion to routing settings.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The problems of a config that must be refused.
fn problems_of(text: &str) -> Vec<ConfigProblem> {
    match AppConfig::from_toml_str(text) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => e.problems(),
    }
}

/// Asserts that some problem has exactly `path` and a message containing `needle`.
fn assert_problem(problems: &[ConfigProblem], path: &str, needle: &str) {
    assert!(
        problems
            .iter()
            .any(|p| p.path == path && p.message.contains(needle)),
        "no problem at `{path}` mentioning `{needle}` in:\n{}",
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn embedded_default_parses_and_validates() {
    let config = AppConfig::embedded_default().expect("embedded default loads");
    assert_eq!(config.validate(), vec![]);
    assert_eq!(config.routing_settings().validate(), vec![]);
    assert_eq!(config.server.listen, "127.0.0.1:8080");
    assert_eq!(config.server.max_frame_bytes, 64 * 1024);
    assert_eq!(
        config.server.public_paths,
        ["/healthz", "/readyz", "/metrics"]
    );
    assert!(!config.server.echo_endpoint);
    assert!(config.uses_dev_tokens());
    assert_eq!(config.routing.default_queue, "general");
    assert_eq!(config.routing.agent_max_total, None);
    assert_eq!(config.snapshot.durability, Durability::Journal);
    assert_eq!(config.snapshot.keep, 3);
    assert_eq!(config.logging.format, LogFormat::Text);
    // A file with no content is the default itself.
    assert_eq!(AppConfig::from_toml_str("").expect("empty file"), config);
    assert_eq!(
        AppConfig::load_with_env(None, Vec::new()).expect("load"),
        config
    );
}

#[test]
fn default_channels_and_queues_in_file_order() {
    let settings = AppConfig::embedded_default()
        .expect("default")
        .routing_settings();
    let channels: Vec<_> = settings
        .channels
        .iter()
        .map(|c| (c.name.as_str(), c.default_capacity))
        .collect();
    assert_eq!(
        channels,
        [
            ("voice", 1),
            ("chat", 3),
            ("email", 5),
            ("sms", 3),
            ("social", 3)
        ]
    );
    let answer: Vec<_> = settings
        .channels
        .iter()
        .map(|c| c.sla.answer_target_ms)
        .collect();
    assert_eq!(
        answer,
        [Some(20_000), Some(30_000), None, Some(60_000), Some(60_000)]
    );
    assert_eq!(
        settings.channels[2].sla.first_response_target_ms,
        Some(3_600_000)
    );
    assert!(settings
        .channels
        .iter()
        .all(|c| c.sla.warning_fraction == 0.8));
    assert_eq!(
        settings.channels[0].sla.on_warning,
        [SlaAction::BoostPriority { by: 5 }]
    );

    let queues: Vec<_> = settings.queues.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(queues, ["general", "billing", "support", "vip"]);
    let billing = &settings.queues[1];
    assert_eq!(billing.skills, [("billing".to_string(), 2)]);
    assert_eq!(
        billing.widening,
        [WideningStep {
            after_ms: 30_000,
            lower_levels_by: 1,
            drop_skills: vec![]
        }]
    );
    assert_eq!(billing.overflow_queue.as_deref(), Some("general"));
    assert_eq!(settings.queues[2].policy, SelectionPolicy::MostSkilled);
    assert_eq!(settings.queues[3].priority, 10);
    assert_eq!(
        settings.queues[3].overflow_queue.as_deref(),
        Some("general")
    );
}

#[test]
fn file_layers_over_default_and_converts_to_ms() {
    let config = AppConfig::from_toml_str(
        r#"
        [channels.voice]
        offer_timeout_secs = 2.5

        [channels.whatsapp]
        default_capacity = 2
        offer_timeout_secs = 30

        [queues.billing]
        skills = { refunds = 3, billing = 4 }

        [routing]
        agent_max_total = 4
        "#,
    )
    .expect("valid");
    let settings = config.routing_settings();
    assert_eq!(settings.channels[0].offer_timeout_ms, 2_500);
    // Untouched siblings keep the default.
    assert_eq!(settings.channels[0].sla.answer_target_ms, Some(20_000));
    assert_eq!(
        settings.channels.last().map(|c| c.name.as_str()),
        Some("whatsapp")
    );
    // A queue's skills are replaced whole, and sorted by name.
    assert_eq!(
        settings.queues[1].skills,
        [("billing".to_string(), 4), ("refunds".to_string(), 3)]
    );
    assert_eq!(config.routing.agent_max_total, Some(4));
}

#[test]
fn inherit_default_false_makes_a_file_complete_on_its_own() {
    let mut text = DEFAULT_CONFIG.replace("inherit_default = true", "inherit_default = false");
    // Remove the vip queue: only possible without inheritance.
    let start = text.find("[queues.vip]").expect("vip");
    let end = text.find("[snapshot]").expect("snapshot");
    text.replace_range(start..end, "");
    let config = AppConfig::from_toml_str(&text).expect("complete file");
    assert!(!config.queues.contains("vip"));
    assert_eq!(config.queues.len(), 3);

    let problems = problems_of("inherit_default = false\n[server]\nlisten = \"127.0.0.1:1\"\n");
    assert_problem(&problems, "server", "missing field `max_frame_bytes`");
}

#[test]
fn tokens_resolve_to_roles() {
    let config = AppConfig::from_toml_str(
        r#"
        [[auth.tokens]]
        token = "s3cret-agent"
        role = "agent"
        name = "desk 17"
        agent_id = "a-17"

        [[auth.tokens]]
        token = "s3cret-gw"
        role = "connector"
        name = "sip gateway"
        "#,
    )
    .expect("valid");
    assert!(
        !config.uses_dev_tokens(),
        "a file's token list replaces the dev tokens"
    );
    let (role, entry) = config.role_for_token("s3cret-agent").expect("known token");
    assert_eq!((role, role.as_str()), (Role::Agent, "agent"));
    assert_eq!(entry.agent_id.as_deref(), Some("a-17"));
    assert_eq!(
        config.role_for_token("s3cret-gw").map(|(r, _)| r),
        Some(Role::Connector)
    );
    assert!(config.role_for_token("s3cret-agen").is_none());
    assert!(config.role_for_token("").is_none());
    assert!(config.role_for_token("dev-agent-token").is_none());
    assert!(
        !format!("{entry:?}").contains("s3cret"),
        "Debug must not print the token"
    );
}

#[test]
fn unknown_overflow_queue_is_refused() {
    let problems = problems_of("[queues.billing]\noverflow_queue = \"nowhere\"\n");
    assert_problem(
        &problems,
        "queues.billing.overflow_queue",
        "unknown queue `nowhere`",
    );
    let problems = problems_of("[routing]\ndefault_queue = \"missing\"\n");
    assert_problem(
        &problems,
        "routing.default_queue",
        "unknown queue `missing`",
    );
}

#[test]
fn unknown_channel_in_a_queue_is_refused() {
    let problems = problems_of("[queues.billing]\nchannels = [\"voice\", \"fax\"]\n");
    assert_problem(
        &problems,
        "queues.billing.channels",
        "unknown channel `fax`",
    );
    let ok = AppConfig::from_toml_str("[queues.billing]\nchannels = [\"voice\", \"chat\"]\n")
        .expect("known channels are fine");
    assert_eq!(
        ok.routing_settings()
            .queues
            .iter()
            .find(|q| q.name == "billing")
            .unwrap()
            .channels,
        vec!["voice", "chat"]
    );
}

#[test]
fn overflow_loop_is_refused() {
    let problems = problems_of("[queues.general]\noverflow_queue = \"vip\"\n");
    assert_problem(
        &problems,
        "queues.general.overflow_queue",
        "general -> vip -> general",
    );
}

#[test]
fn negative_and_zero_timeouts_are_refused() {
    let problems = problems_of(
        "[channels.voice]\noffer_timeout_secs = -5\n[channels.chat]\noffer_timeout_secs = 0\n[server]\nheartbeat_interval_secs = -1\n",
    );
    assert_problem(&problems, "channels.voice.offer_timeout_secs", "negative");
    assert_problem(
        &problems,
        "channels.chat.offer_timeout_secs",
        "greater than 0",
    );
    assert_problem(&problems, "server.heartbeat_interval_secs", "negative");
    // Every problem is reported once: the routing core's identical finding is not repeated.
    assert_eq!(
        problems
            .iter()
            .filter(|p| p.path == "channels.chat.offer_timeout_secs")
            .count(),
        1
    );
}

#[test]
fn negative_where_unsigned_names_the_field() {
    let problems = problems_of("[server]\nmax_frame_bytes = -5\n");
    assert_eq!(problems.len(), 1);
    assert_problem(&problems, "server.max_frame_bytes", "-5");
    let problems = problems_of("[channels.voice]\ndefault_capacity = \"one\"\n");
    assert_problem(
        &problems,
        "channels.voice.default_capacity",
        "invalid type: string",
    );
}

#[test]
fn duplicate_token_is_refused() {
    let problems = problems_of(
        r#"
        [[auth.tokens]]
        token = "same"
        role = "agent"
        name = "a"
        [[auth.tokens]]
        token = "same"
        role = "supervisor"
        name = "b"
        "#,
    );
    assert_problem(&problems, "auth.tokens[1].token", "duplicate token");
}

#[test]
fn unknown_field_is_refused() {
    let problems = problems_of("[server]\nlisten = \"127.0.0.1:9\"\nlistn = \"x\"\n");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_problem(
        &problems,
        "server.listn",
        "unknown field `listn`, expected one of `listen`",
    );

    let problems =
        problems_of("[queues.billing.sla]\non_breach = [{ action = \"widen\", by = 3 }]\n");
    assert_problem(
        &problems,
        "queues.billing.sla.on_breach[0]",
        "`by` only applies to `boost_priority`",
    );
    let problems = problems_of(
        "[channels.chat.sla]\non_warning = [{ action = \"boost_priority\", bye = 3 }]\n",
    );
    assert_problem(
        &problems,
        "channels.chat.sla.on_warning[0].bye",
        "unknown field `bye`",
    );
    let problems =
        problems_of("[channels.chat.sla]\non_warning = [{ action = \"boost_priority\" }]\n");
    assert_problem(&problems, "channels.chat.sla.on_warning[0]", "needs `by`");
    let problems =
        problems_of("[channels.chat.sla]\non_warning = [{ action = \"page_someone\" }]\n");
    assert_problem(
        &problems,
        "channels.chat.sla.on_warning[0].action",
        "unknown variant `page_someone`",
    );

    let problems = problems_of("[sever]\nlisten = \"127.0.0.1:9\"\n");
    assert_problem(&problems, "sever", "unknown field `sever`");
}

#[test]
fn unknown_role_is_refused() {
    let problems = problems_of("[[auth.tokens]]\ntoken = \"t\"\nrole = \"admin\"\nname = \"x\"\n");
    assert_problem(&problems, "auth.tokens[0].role", "unknown variant `admin`");
}

#[test]
fn agent_id_only_on_agent_tokens() {
    let problems = problems_of(
        "[[auth.tokens]]\ntoken = \"t\"\nrole = \"supervisor\"\nname = \"x\"\nagent_id = \"a-1\"\n",
    );
    assert_problem(&problems, "auth.tokens[0].agent_id", "only an agent token");
}

#[test]
fn warning_fraction_outside_unit_interval_is_refused() {
    let problems = problems_of(
        "[channels.voice.sla]\nwarning_fraction = 1.5\n[queues.vip.sla]\nwarning_fraction = 0\n",
    );
    assert_problem(
        &problems,
        "channels.voice.sla.warning_fraction",
        "outside (0, 1)",
    );
    assert_problem(
        &problems,
        "queues.vip.sla.warning_fraction",
        "outside (0, 1)",
    );
}

#[test]
fn skill_level_outside_range_is_refused() {
    let problems = problems_of("[queues.billing]\nskills = { billing = 11, refunds = 0 }\n");
    assert_problem(
        &problems,
        "queues.billing.skills.billing",
        "level 11 is outside 1..=10",
    );
    assert_problem(
        &problems,
        "queues.billing.skills.refunds",
        "level 0 is outside 1..=10",
    );
}

#[test]
fn widening_out_of_order_is_refused() {
    let problems = problems_of(
        "[queues.billing]\nwidening = [{ after_secs = 60, lower_levels_by = 1 }, { after_secs = 30, lower_levels_by = 1 }]\n",
    );
    assert_problem(
        &problems,
        "queues.billing.widening[1].after_secs",
        "increasing order",
    );
    let problems = problems_of(
        "[queues.billing]\nwidening = [{ after_secs = 10, drop_skills = [\"spanish\"] }]\n",
    );
    assert_problem(
        &problems,
        "queues.billing.widening[0].drop_skills",
        "`spanish` is not required",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let problems = problems_of(
        r#"
        [server]
        listen = "localhost"
        outbound_buffer_frames = 0
        [snapshot]
        keep = 0
        thread_nice = -5
        commit_window_secs = 0.5
        [routing]
        agent_max_total = 0
        [channels.voice]
        default_capacity = 0
        [channels.chat]
        default_capacity = 0
        [channels.email]
        default_capacity = 0
        [channels.sms]
        default_capacity = 0
        [channels.social]
        default_capacity = 0
        [logging]
        level = "verbose"
        [queues.general.sla]
        on_breach = [{ action = "overflow" }, { action = "boost_priority", by = 0 }]
        "#,
    );
    assert_problem(&problems, "server.listen", "not an IP:port");
    assert_problem(&problems, "server.outbound_buffer_frames", "greater than 0");
    assert_problem(&problems, "snapshot.keep", "at least 1");
    assert_problem(&problems, "snapshot.thread_nice", "0..=19");
    assert_problem(&problems, "snapshot.commit_window_secs", "at most 0.1");
    assert_problem(&problems, "routing.agent_max_total", "at least 1");
    assert_problem(
        &problems,
        "channels",
        "every channel has default_capacity 0",
    );
    assert_problem(&problems, "logging.level", "`verbose` is not a level");
    assert_problem(
        &problems,
        "queues.general.sla.on_breach",
        "needs the queue's overflow_queue",
    );
    assert_problem(
        &problems,
        "queues.general.sla.on_breach[1].by",
        "greater than 0",
    );
    // And the error's Display lists them one per line.
    let err =
        AppConfig::from_toml_str("[snapshot]\nkeep = 0\n[server]\noutbound_buffer_frames = 0\n")
            .expect_err("invalid");
    let text = err.to_string();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.lines()
            .any(|l| l == "snapshot.keep: must be at least 1"),
        "{text}"
    );
}

#[test]
fn syntax_error_names_line_and_column() {
    let problems = problems_of("[server]\nlisten = \n");
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].path, "<string>:2:10");
    assert!(
        problems[0].message.starts_with("TOML syntax error"),
        "{problems:?}"
    );
    let problems = problems_of("[server\n");
    assert_eq!(problems[0].path, "<string>:1:8");
    assert!(
        !problems[0].message.contains('\n'),
        "one line per problem: {problems:?}"
    );
}

#[test]
fn env_overrides_listen_and_a_channel_timeout() {
    let config = AppConfig::from_toml_str_with_env(
        "",
        env(&[
            ("SWITCHBOARD__SERVER__LISTEN", "127.0.0.1:0"),
            ("SWITCHBOARD__CHANNELS__VOICE__OFFER_TIMEOUT_SECS", "5"),
            ("SWITCHBOARD__SERVER__ECHO_ENDPOINT", "true"),
            ("SWITCHBOARD__QUEUES__BILLING__SKILLS", "{ billing = 5 }"),
            ("SWITCHBOARD__LOGGING__LEVEL", "\"debug\""),
            ("PATH", "/usr/bin"),
            ("SWITCHBOARD_CONFIG", "ignored: single underscore"),
        ]),
    )
    .expect("valid");
    assert_eq!(config.server.listen, "127.0.0.1:0");
    assert_eq!(config.server.listen_addr().map(|a| a.port()), Ok(0));
    assert!(config.server.echo_endpoint);
    assert_eq!(config.logging.level, "debug");
    let settings = config.routing_settings();
    assert_eq!(settings.channels[0].offer_timeout_ms, 5_000);
    assert_eq!(settings.queues[1].skills, [("billing".to_string(), 5)]);
}

#[test]
fn env_override_applies_over_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("switchboard.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:9000\"\nheartbeat_interval_secs = 2\n",
    )
    .expect("write");
    let config = AppConfig::load_with_env(
        Some(&path),
        env(&[("SWITCHBOARD__SERVER__LISTEN", "127.0.0.1:9001")]),
    )
    .expect("load");
    assert_eq!(config.server.listen, "127.0.0.1:9001");
    assert_eq!(config.server.heartbeat_interval_secs.as_ms(), 2_000);

    let missing = dir.path().join("missing.toml");
    match AppConfig::load_with_env(Some(&missing), Vec::new()) {
        Err(ConfigError::Read { path, .. }) => assert_eq!(path, missing),
        other => panic!("expected a read error, got {other:?}"),
    }
}

#[test]
fn env_override_with_unknown_key_is_reported() {
    let err = AppConfig::from_toml_str_with_env(
        "",
        env(&[("SWITCHBOARD__SERVER__LISTN", "127.0.0.1:0")]),
    )
    .expect_err("unknown key");
    let problems = err.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_problem(&problems, "server.listn", "unknown field `listn`");
    assert_problem(
        &problems,
        "server.listn",
        "(set by SWITCHBOARD__SERVER__LISTN)",
    );
}

#[test]
fn env_override_with_bad_value_or_shape_is_reported() {
    let err = AppConfig::from_toml_str_with_env(
        "",
        env(&[("SWITCHBOARD__CHANNELS__VOICE__OFFER_TIMEOUT_SECS", "-5")]),
    )
    .expect_err("negative");
    assert_problem(
        &err.problems(),
        "channels.voice.offer_timeout_secs",
        "SWITCHBOARD__CHANNELS__VOICE__OFFER_TIMEOUT_SECS",
    );

    let err = AppConfig::from_toml_str_with_env(
        "",
        env(&[
            ("SWITCHBOARD__SERVER__LISTEN__PORT", "1"),
            ("SWITCHBOARD__AUTH__TOKENS__0__TOKEN", "x"),
            ("SWITCHBOARD__", "x"),
            ("SWITCHBOARD__INHERIT_DEFAULT", "false"),
            ("SWITCHBOARD__SNAPSHOT__KEEP", "2"),
            ("SWITCHBOARD__snapshot__keep", "4"),
        ]),
    )
    .expect_err("bad shapes");
    let problems = err.problems();
    assert_problem(
        &problems,
        "SWITCHBOARD__SERVER__LISTEN__PORT",
        "`server.listen` is a string",
    );
    assert_problem(
        &problems,
        "SWITCHBOARD__AUTH__TOKENS__0__TOKEN",
        "`auth.tokens` is an array",
    );
    assert_problem(&problems, "SWITCHBOARD__", "empty path segment");
    assert_problem(
        &problems,
        "SWITCHBOARD__INHERIT_DEFAULT",
        "only be set in a config file",
    );
    assert_problem(
        &problems,
        "SWITCHBOARD__snapshot__keep",
        "as SWITCHBOARD__SNAPSHOT__KEEP does already",
    );
}

#[test]
fn seconds_convert_to_ms() {
    assert_eq!(Seconds(1.5).as_ms(), 1_500);
    assert_eq!(Seconds(0.0004).as_ms(), 0);
    assert_eq!(Seconds(-3.0).as_ms(), 0);
    assert_eq!(Seconds(f64::NAN).as_ms(), 0);
    assert_eq!(Seconds(2.0).as_duration(), Duration::from_secs(2));
    let problems = problems_of("[routing]\ndecline_cooldown_secs = 0.0001\n");
    assert_problem(
        &problems,
        "routing.decline_cooldown_secs",
        "resolution of 1 ms",
    );
}
