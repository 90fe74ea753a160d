"""Temporal activities (thin classes holding their clients) and the input/result models the
workflows share with them; the one place where ACCI's errors become ``ApplicationError``s."""
