// Shared argument parsing for the examples (included with `include!`, no extra dependency).

struct Args {
    values: std::collections::HashMap<String, String>,
}

impl Args {
    fn parse(known: &[&str]) -> Args {
        let mut values = std::collections::HashMap::new();
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            let Some(name) = a.strip_prefix("--") else {
                fail(&format!("unexpected argument {a:?}"));
            };
            if !known.contains(&name) {
                fail(&format!("unknown option --{name}; known: --{}", known.join(" --")));
            }
            let Some(v) = it.next() else {
                fail(&format!("--{name} needs a value"));
            };
            values.insert(name.to_owned(), v);
        }
        Args { values }
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.values.get(k).map(String::as_str)
    }

    fn required(&self, k: &str) -> &str {
        self.get(k).unwrap_or_else(|| fail(&format!("--{k} is required")))
    }

    fn number<T: std::str::FromStr>(&self, k: &str, default: T) -> T {
        match self.get(k) {
            None => default,
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| fail(&format!("--{k} {v:?} is not a number"))),
        }
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(2);
}
