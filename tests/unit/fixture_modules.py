"""A text -> number module for tests: how many animal words a text holds (SASC should find "animals")."""

ANIMALS = {"cat", "cats", "dog", "dogs", "horse", "bird", "fish"}


def animal_words(texts: list[str]) -> list[float]:
    return [float(sum(word.strip(".,!?").lower() in ANIMALS for word in text.split())) for text in texts]
