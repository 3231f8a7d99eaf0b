"""Long-term memory of employees and teams: remember, recall, correct, forget, documents."""
