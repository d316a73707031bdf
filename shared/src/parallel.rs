//! Work spread over the machine's cores natively (one thread in the browser, which has one per
//! worker): used where the results do not depend on how the work is split, so that a study
//! compiles to the same bytes on any machine.

/// `f(0)`, …, `f(n - 1)` in index order, computed on up to [`threads`] threads; `done(i, &f(i))`
/// is called on the calling thread as each result arrives (for progress).
pub fn map<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync, mut done: impl FnMut(usize, &T)) -> Vec<T> {
    let threads = threads().min(n);
    if threads <= 1 {
        return (0..n)
            .map(|i| {
                let result = f(i);
                done(i, &result);
                result
            })
            .collect();
    }
    let mut results: Vec<Option<T>> = (0..n).map(|_| None).collect();
    std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::channel();
        for t in 0..threads {
            let (sender, f) = (sender.clone(), &f);
            scope.spawn(move || {
                for i in (t..n).step_by(threads) {
                    if sender.send((i, f(i))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        for (i, result) in receiver {
            done(i, &result);
            results[i] = Some(result);
        }
    });
    results
        .into_iter()
        .map(|r| r.expect("every index was computed"))
        .collect()
}

/// Threads [`map`] uses: the machine's cores natively, one in the browser.
pub fn threads() -> usize {
    #[cfg(target_arch = "wasm32")]
    return 1;
    #[cfg(not(target_arch = "wasm32"))]
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_come_back_in_index_order_and_each_is_reported_once() {
        let mut seen = Vec::new();
        let squares = super::map(37, |i| i * i, |i, &r| seen.push((i, r)));
        assert_eq!(squares, (0..37).map(|i| i * i).collect::<Vec<_>>());
        seen.sort();
        assert_eq!(seen, (0..37).map(|i| (i, i * i)).collect::<Vec<_>>());
    }
}
