"""stylebox/report.py: the one writer of generated blocks in hand-written markdown (bench,
frontier, flicker and train-bench reports)."""

from __future__ import annotations

from stylebox.report import markers, write_between


def test_a_new_file_gets_the_title_then_the_block(tmp_path):
    md = tmp_path / "docs" / "new.md"  # the folder is made too
    write_between(md, "bench", "| a |\n|---|\n\n", title="Performance")
    assert md.read_text() == ("# Performance\n\n<!-- bench:begin -->\n| a |\n|---|\n"
                              "<!-- bench:end -->\n")
    untitled = tmp_path / "t.md"
    write_between(untitled, "train-bench", "row\n")
    assert untitled.read_text() == "<!-- train-bench:begin -->\nrow\n<!-- train-bench:end -->\n"


def test_the_block_is_replaced_and_the_prose_around_it_kept_as_written(tmp_path):
    md = tmp_path / "perf.md"
    md.write_text("# Mine\n\nprose above\n<!-- x:begin -->\nold\n\nolder\n<!-- x:end -->\n"
                  "prose below, no blank line before it\n\n\n")
    write_between(md, "x", "new", title="Ignored")
    assert md.read_text() == ("# Mine\n\nprose above\n<!-- x:begin -->\nnew\n<!-- x:end -->\n"
                              "prose below, no blank line before it\n\n\n")
    before = md.read_text()
    write_between(md, "x", "new")  # a rerun with the same body changes nothing
    assert md.read_text() == before


def test_a_missing_block_is_appended_after_one_blank_line(tmp_path):
    md = tmp_path / "r.md"
    md.write_text("# Flicker\n\nprose\n\n\n")
    write_between(md, "flicker:table", "one")
    write_between(md, "flicker:long", "two")
    write_between(md, "flicker:table", "three")  # replaced in place, before the later block
    assert md.read_text() == ("# Flicker\n\nprose\n\n"
                              "<!-- flicker:table:begin -->\nthree\n<!-- flicker:table:end -->\n\n"
                              "<!-- flicker:long:begin -->\ntwo\n<!-- flicker:long:end -->\n")


def test_markers_are_matched_by_whole_name_and_in_order(tmp_path):
    md = tmp_path / "r.md"
    end_first = "<!-- a:end -->\n\n<!-- a:begin -->\n"  # no end after the begin: no block
    md.write_text(f"# R\n\n{end_first}")
    write_between(md, "a", "x")
    text = md.read_text()
    assert text.startswith(f"# R\n\n{end_first}") and text.endswith("\n\n" + "\n".join(
        [markers("a")[0], "x", markers("a")[1]]) + "\n")
    # "bench" is not "train-bench": each tool finds only its own block.
    md.write_text("<!-- train-bench:begin -->\nt\n<!-- train-bench:end -->\n")
    write_between(md, "bench", "b")
    assert md.read_text().startswith("<!-- train-bench:begin -->\nt\n<!-- train-bench:end -->")
    assert md.read_text().count("<!-- bench:begin -->") == 1
