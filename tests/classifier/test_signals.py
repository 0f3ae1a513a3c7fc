from __future__ import annotations

from classifier import compute_signals

GSM8K_STYLE = (
    "A farmer has 3 fields. The first field yields 240 kg of wheat, the second yields 15% more "
    "than the first, and the third yields half as much as the first two combined. If he sells "
    "the wheat at $0.35 per kg, how much money does he make?"
)


def test_code_fence_and_traceback() -> None:
    fenced = "Why is this slow?\n```python\nfor i in range(n):\n    xs.append(i)\n```"
    assert compute_signals(fenced).code >= 4
    trace = 'Traceback (most recent call last):\n  File "a.py", line 3, in <module>\nKeyError: 1'
    assert compute_signals(trace).code >= 2
    assert compute_signals("What is the capital of France?").code == 0


def test_arithmetic_and_word_problems() -> None:
    assert compute_signals("17*23").math >= 3
    assert compute_signals("what is 12 times 9").math >= 3
    assert compute_signals(GSM8K_STYLE).math >= 3
    assert compute_signals("Who wrote War and Peace?").math < 1


def test_numbers_in_multiple_choice_options_do_not_make_math() -> None:
    mmlu = ("Which dynasty built the Forbidden City?\nA. 1368-1644 Ming\nB. 1644-1912 Qing\n"
            "C. 960-1279 Song\nD. 618-907 Tang\nAnswer:")  # fmt: skip
    assert compute_signals(mmlu).math < 1


def test_words_about_now() -> None:
    assert compute_signals("what's the stock price today").time_sensitive >= 3
    assert compute_signals("What is the weather forecast for tomorrow in Oslo?").time_sensitive >= 3
    assert compute_signals("Explain photosynthesis").time_sensitive == 0


def test_long_prompt_reads_head_and_tail() -> None:
    filler = "Some background about the company and its history. " * 400
    tail = "Given all this, if 12 workers build 3 sheds in 4 days, how many days do 8 workers need?"
    assert compute_signals(filler).math == 0
    assert compute_signals(filler + tail).math >= 2.5
    head = "```js\nconsole.log(1)\n```\n"
    assert compute_signals(head + filler).code >= 4


def test_exam_headers_name_the_subject() -> None:
    stats = (
        "The following are multiple choice questions (with answers) about high school statistics."
    )
    assert compute_signals(stats + "\nWhich is a measure of spread?\nA. mean\nB. IQR").math >= 3
    history = "The following is a multiple choice question about world history.\nWho was Pericles?"
    assert compute_signals(history).factual >= 2
    assert compute_signals("I have questions about Django models").factual == 0
