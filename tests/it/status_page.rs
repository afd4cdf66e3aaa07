//! The status page in a real browser: headless Chromium loads `/` and the rendered DOM shows every
//! GPU with its level, allocation against its limits, drift and top processes.
//!
//! The DOM is dumped after the page's script ran: it must have redrawn the page from the JSON API
//! (so the Content-Security-Policy's hashes admit the inline script), with the same markup.
//! Phone, laptop and wide sizes, overflow and the README's screenshots: `scripts/screenshots.sh`.
//!
//! Where Chromium is not installed the test says so loudly and stops; with VRAM_REQUIRE_TOOLS set
//! (as `.ci/run` does) that is a failure.

use std::time::Duration;

use crate::harness::{chromium, redrawn_page, Exporter, Options};

const SCENARIO: &str = include_str!("../fixtures/scenarios/status-page.toml");

#[test]
fn status_page_renders_every_gpu() {
    let Some(browser) = chromium("status page browser test") else {
        return;
    };
    let e = Exporter::start(Options {
        scenario: SCENARIO,
        ..Default::default()
    });
    e.wait_metrics("first poll", Duration::from_secs(10), |m| {
        m.count("vram_gpu_info") == 4
    });
    let dom = redrawn_page(browser, &e.url("/"));
    assert!(dom.contains("<section"), "no card: {dom}");

    let card = |gpu: u32| -> String {
        let start = dom
            .find(&format!("data-gpu=\"{gpu}\""))
            .unwrap_or_else(|| panic!("no card for GPU {gpu}:\n{dom}"));
        let end = dom[start..]
            .find("</section>")
            .map(|e| start + e)
            .unwrap_or(dom.len());
        dom[start..end].to_string()
    };
    let hard = card(0);
    assert!(
        hard.contains("data-level=\"2\"") && hard.contains(">hard<"),
        "{hard}"
    );
    assert!(
        hard.contains("train_llm.py") && hard.contains("78.0 GiB"),
        "{hard}"
    );
    assert!(
        hard.contains("class=\"mark hard\"") && hard.contains("class=\"mark soft\""),
        "{hard}"
    );
    let soft = card(1);
    assert!(
        soft.contains("data-level=\"1\"") && soft.contains(">soft<"),
        "{soft}"
    );
    assert!(
        soft.contains("jupyter &lt;kernel&gt;"),
        "process names are escaped: {soft}"
    );
    let ok = card(2);
    assert!(
        ok.contains("data-level=\"0\"") && ok.contains(">ok<") && ok.contains("inference"),
        "{ok}"
    );
    let lost = card(3);
    assert!(lost.contains("lost"), "{lost}");
    assert!(dom.contains("4 GPU(s)") && dom.contains("NVML up"));
    assert!(
        !dom.contains("http://") && !dom.contains("https://"),
        "the page loads no external assets"
    );

    assert!(
        dom.contains("data-updated="),
        "the page's script did not redraw it (blocked by the CSP?): {dom}"
    );
    // The cards, not the script's source (which the dump includes).
    let main = &dom[dom.find("<main").unwrap()..dom.find("</main>").unwrap()];
    assert_eq!(
        main.matches("<svg class=\"spark\"").count(),
        3,
        "a chart per GPU up"
    );
    assert!(
        card(0).contains("class=\"band hard\""),
        "GPU 0 is drawn in hard breach"
    );
    assert!(dom.contains("id=\"events\""), "the timeline");
}
