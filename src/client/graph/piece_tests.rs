//! Reading a graph file in pieces gives what reading it whole gives: the same graph, or the
//! same one-line error at the same line.

use super::*;

/// The graph (or the error, as shown) from reading `text` in pieces of `tasks_per_piece`, after
/// checking it is what reading the text whole gives.
fn both_ways(text: &str, tasks_per_piece: usize) -> Result<Graph, String> {
    let in_pieces = parse_in_pieces(text, "graph.toml", tasks_per_piece).map_err(|e| e.to_string());
    let lines = LineIndex::new(text);
    let whole = parse_whole(text, &Report::new("graph.toml", &lines)).map_err(|e| e.to_string());
    assert_eq!(in_pieces, whole, "read in pieces of {tasks_per_piece} and whole");
    in_pieces
}

/// Whether the text was read piece by piece, without falling back to reading it whole.
fn read_in_pieces(text: &str, tasks_per_piece: usize) -> bool {
    let lines = LineIndex::new(text);
    read_pieces(text, tasks_per_piece, &Report::new("graph.toml", &lines)).is_some()
}

fn file(lines: &[&str]) -> String {
    lines.join("\n") + "\n"
}

#[test]
fn a_task_header_inside_a_multi_line_string_is_part_of_the_string() {
    for quote in ["'''", "\"\"\""] {
        let text = file(&[
            "[[task]]",
            "key = \"a\"",
            "function = \"f\"",
            &format!("args = {quote}"),
            "[[task]]",
            "key = \"not a task\"",
            quote,
            "[[task]]",
            "key = \"b\"",
            "function = \"f\"",
        ]);
        assert!(read_in_pieces(&text, 1), "{quote}: the string was cut");
        let graph = both_ways(&text, 1).expect("a valid graph");
        assert_eq!(graph.tasks.len(), 2);
        let TaskSpec::Function { args, .. } = &graph.tasks[0].spec else {
            panic!("not a function: {:?}", graph.tasks[0]);
        };
        assert_eq!(args, br#""[[task]]\nkey = \"not a task\"\n""#);
    }
}

#[test]
fn defaults_after_the_tasks_apply_to_every_task() {
    let text = file(&[
        "[[task]]",
        "key = \"a\"",
        "command = [\"true\"]",
        "[[task]]",
        "key = \"b\"",
        "function = \"f\"",
        "priority = 0",
        "deps = [\"a\"]",
        "[[task]]",
        "key = \"c\"",
        "function = \"f\"",
        "output = true",
        "",
        "[defaults]",
        "priority = 5",
        "args = \"x\"",
        "cwd = \"/tmp\"",
        "env = { A = \"1\" }",
        "resources = { CPU = 1 }",
        "output = false",
    ]);
    assert!(read_in_pieces(&text, 1));
    let graph = both_ways(&text, 1).expect("a valid graph");
    let TaskSpec::Command(spec) = &graph.tasks[0].spec else {
        panic!("not a command: {:?}", graph.tasks[0]);
    };
    assert_eq!(spec.cwd.as_deref(), Some("/tmp"));
    assert_eq!(spec.env, vec![("A".to_owned(), "1".to_owned())]);
    assert_eq!(graph.tasks[0].options.priority, 5);
    assert_eq!(graph.tasks[1].options.priority, 0, "the task's own value wins");
    assert_eq!(graph.tasks[1].options.resources, vec![("CPU".to_owned(), 1.0)]);
    assert_eq!(
        graph.tasks[1].spec,
        TaskSpec::Function {
            name: "f".into(),
            args: br#""x""#.to_vec(),
            args_form: crate::protocol::ArgsForm::Json,
        }
    );
    let outputs: Vec<&str> = graph.outputs.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(outputs, vec!["c"]);
}

#[test]
fn mistakes_in_a_later_piece_are_reported_at_their_line() {
    // Six tasks of four lines, in pieces of two: tasks t4 and t5 (lines 17 to 24) are the
    // third piece.
    let mut lines: Vec<String> = Vec::new();
    for i in 0..6 {
        lines.extend(["[[task]]".into(), format!("key = \"t{i}\""), "function = \"f\"".into()]);
        lines.push(if i == 0 {
            String::new()
        } else {
            format!("deps = [\"t{}\"]", i - 1)
        });
    }
    let with = |changes: &[(usize, &str)]| {
        let mut changed = lines.clone();
        for &(line, text) in changes {
            changed[line - 1] = text.to_owned();
        }
        file(&changed.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let refusal = |changes: &[(usize, &str)]| {
        let text = with(changes);
        both_ways(&text, 2).expect_err("an invalid graph")
    };
    assert!(both_ways(&with(&[]), 2).is_ok(), "the unchanged graph is valid");
    assert!(read_in_pieces(&with(&[(20, "deps = [\"t3\", \"x\"]")]), 2));

    let cases: &[(&[(usize, &str)], &str)] = &[
        (
            &[(20, "deps = [\"t3\", \"x\"]")],
            "20: task \"t4\" depends on unknown key \"x\"",
        ),
        (&[(23, "function = \"\"")], "23: task \"t5\" has an empty function name"),
        (
            &[(22, "key = \"t1\"")],
            "22: duplicate task key \"t1\" (first defined on line 6)",
        ),
        (
            &[(4, "deps = [\"t5\"]")],
            "2: dependency cycle: t0 -> t5 -> t4 -> t3 -> t2 -> t1 -> t0",
        ),
        (
            &[(4, "output = \"o.txt\""), (24, "output = \"o.txt\"")],
            "24: task \"t5\" writes its output to \"o.txt\", as task \"t0\" already does",
        ),
        (
            &[(24, "[defaults]\noutput = \"all.txt\"")],
            "25: [defaults] output must be true or false: tasks cannot all write to one file",
        ),
        // Mistakes come in the order a reader meets them, whatever piece they are in.
        (
            &[(8, "deps = [\"x\"]"), (23, "function = \"\"")],
            "8: task \"t1\" depends on unknown key \"x\"",
        ),
        (
            &[(7, "function = \"\""), (24, "deps = [\"x\"]")],
            "7: task \"t1\" has an empty function name",
        ),
        (
            &[(7, "function = \"\""), (22, "key = \"t1\"")],
            "22: duplicate task key \"t1\" (first defined on line 6)",
        ),
        (
            &[(7, "function = \"\""), (24, "[defaults]\ntimeout = \"0s\"")],
            "25: [defaults] timeout must be more than zero",
        ),
    ];
    for (changes, expected) in cases {
        assert_eq!(refusal(changes), format!("graph.toml:{expected}"), "{changes:?}");
    }

    // toml's own mistakes are toml's words at toml's line: the whole file is read again.
    let text = with(&[(23, "function = ")]);
    assert!(!read_in_pieces(&text, 2));
    let message = both_ways(&text, 2).expect_err("bad TOML");
    assert!(message.starts_with("graph.toml:23: "), "{message}");
}

#[test]
fn defaults_in_two_pieces_are_read_as_toml_reads_them() {
    let tasks = [
        "[[task]]",
        "key = \"a\"",
        "command = [\"true\"]",
        "[[task]]",
        "key = \"b\"",
        "command = [\"true\"]",
    ];
    // One table written in two places is a mistake...
    let text = file(
        &[
            &["[defaults]", "retries = 1"],
            &tasks[..],
            &["[defaults]", "priority = 1"],
        ]
        .concat(),
    );
    assert!(!read_in_pieces(&text, 1));
    let message = both_ways(&text, 1).expect_err("[defaults] twice");
    assert!(message.starts_with("graph.toml:9: "), "{message}");
    // ...but a table and its sub-table are not.
    let text = file(
        &[
            &["[defaults]", "retries = 1"],
            &tasks[..],
            &["[defaults.env]", "A = \"1\""],
        ]
        .concat(),
    );
    let graph = both_ways(&text, 1).expect("a valid graph");
    assert_eq!(graph.tasks[1].options.retries, 1);
    let TaskSpec::Command(spec) = &graph.tasks[1].spec else {
        panic!("not a command: {:?}", graph.tasks[1]);
    };
    assert_eq!(spec.env, vec![("A".to_owned(), "1".to_owned())]);
}

#[test]
fn spaced_commented_and_crlf_headers_cut_the_same_graph() {
    let text = "[[task]]\r\nkey = \"a\"\r\ncommand = [\"true\"]\r\n  [[ task ]] # b\r\nkey = \"b\"\r\n\
                command = [\"env\"]\r\n[task.env]\r\nA = \"1\"\r\n\t[[task]]\r\nkey = \"c\"\r\n\
                function = \"f\"\r\ndeps = [\"a\", \"x\"]\r\n";
    assert!(read_in_pieces(text, 1));
    assert_eq!(
        both_ways(text, 1).expect_err("an unknown dep"),
        "graph.toml:12: task \"c\" depends on unknown key \"x\""
    );
    // A sub-table belongs to the task before it, in the same piece.
    let graph = both_ways(&text.replace(", \"x\"", ""), 1).expect("a valid graph");
    let TaskSpec::Command(spec) = &graph.tasks[1].spec else {
        panic!("not a command: {:?}", graph.tasks[1]);
    };
    assert_eq!(spec.env, vec![("A".to_owned(), "1".to_owned())]);
}

/// A graph file of `tasks` tasks of every kind, spelled every way, with `[defaults]` in the
/// middle and multi-line strings that hold `[[task]]` lines.
fn varied_graph(tasks: usize) -> String {
    let mut text = String::with_capacity(tasks * 100);
    for i in 0..tasks {
        text.push_str(["[[task]]\n", "[[ task ]]  # spaced\n", "\t[[task]]\r\n"][i % 3]);
        text.push_str(&format!("key = \"t{i}\"\n"));
        match i % 4 {
            0 => text.push_str("command = [\"seq\", \"3\"]\ntimeout = 5\n"),
            1 => text.push_str("function = \"f\"\nargs = '''\n[[task]]\nkey = \"no\"\n'''\n"),
            2 => text.push_str("shell = \"echo \\\"[[task]]\\\"\"\n[task.env]\nB = \"2\"\n"),
            _ => text.push_str("function = \"g\"\noutput = false\npriority = 1\n"),
        }
        if i > 0 && i % 4 != 2 {
            text.push_str(&format!("deps = [\"t{}\", \"t{}\"]\n", i - 1, i / 2));
        }
        if i == tasks / 2 {
            text.push_str("[defaults]\nretries = 2\nenv = { A = \"1\" }\nargs = \"d\"\n");
        }
    }
    text
}

#[test]
fn a_file_of_100_000_tasks_reads_the_same_in_pieces_and_whole() {
    const TASKS: usize = 100_000;
    let text = varied_graph(TASKS);
    assert!(read_in_pieces(&text, TASKS_PER_PIECE));
    let graph = both_ways(&text, TASKS_PER_PIECE).expect("a valid graph");
    assert_eq!(graph.tasks.len(), TASKS);
    assert_eq!(graph.tasks[7].options.retries, 2);
    assert_eq!(graph.tasks[TASKS - 1].deps.len(), 2);
}

#[test]
fn small_pieces_end_after_every_kind_of_task() {
    let text = varied_graph(1000);
    for tasks_per_piece in [1, 2, 3, 7] {
        assert!(read_in_pieces(&text, tasks_per_piece));
        both_ways(&text, tasks_per_piece).expect("a valid graph");
    }
}
