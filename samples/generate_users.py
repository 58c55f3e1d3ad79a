"""Regenerates users.csv, the demo's sample file: 3,000 users, a few of them invalid on purpose.

    python samples/generate_users.py > samples/users.csv

Most invalid rows break a documented FullStory limit and are rejected locally (with line and reason);
a few are valid locally but refused by the provider (an e-mail without "@", a property whose type
conflicts with earlier rows) and come back as provider errors.
"""

import csv
import json
import random
import sys

ROWS = 3000
PLANS = ["free", "starter", "pro", "enterprise"]


def main() -> None:
    rng = random.Random(20261123)
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["uid", "display_name", "email", "plan", "country", "properties"])
    for i in range(1, ROWS + 1):
        uid = f"user-{i:05d}"
        name = f"User {i}"
        email = f"user{i}@example.com"
        props = {"lifetime_value": round(rng.uniform(0, 5000), 2), "beta_tester": rng.random() < 0.2}
        row = [uid, name, email, rng.choice(PLANS), rng.choice(["CZ", "US", "DE", "GB"]), json.dumps(props)]
        position = i % 500  # keep the first rows of every batch clean: they register property types
        if position > 20:
            roll = rng.random()
            if roll < 0.004:
                row[0] = "u" * 300  # uid over 256 characters: rejected locally
            elif roll < 0.008:
                row[5] = '{"lifetime_value": 12,'  # properties column is not valid JSON: rejected locally
            elif roll < 0.012:
                row[5] = json.dumps({"2fa_enabled": True})  # property name must start with a letter
            elif roll < 0.016:
                row[2] = "x" * 120 + "@example.com"  # e-mail over 128 characters: rejected locally
            elif roll < 0.022:
                row[2] = f"user{i}-at-example.com"  # no "@": FullStory answers invalid_email
            elif roll < 0.028:
                row[5] = json.dumps({"lifetime_value": "high"})  # string where earlier rows sent a number
        out.writerow(row)


if __name__ == "__main__":
    main()
