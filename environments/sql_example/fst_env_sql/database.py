"""The shop database the agent queries, and the questions asked about it.

The same SQL script builds the database inside the sandbox (for the agent) and in memory on the host
(for the gold answers), so answers can never drift from the data.
"""

from __future__ import annotations

import sqlite3

SCHEMA_AND_DATA = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL, joined INTEGER NOT NULL);
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL, price REAL NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
                     product_id INTEGER NOT NULL REFERENCES products(id), quantity INTEGER NOT NULL, day TEXT NOT NULL);
INSERT INTO customers VALUES
 (1,'Ada','Lyon',2019),(2,'Bruno','Paris',2020),(3,'Chen','Lyon',2021),(4,'Dana','Nantes',2018),
 (5,'Emil','Paris',2022),(6,'Fatou','Lille',2021),(7,'Gus','Lyon',2023),(8,'Hana','Nantes',2020);
INSERT INTO products VALUES
 (1,'Atlas','books',24.5),(2,'Kettle','kitchen',39.0),(3,'Novel','books',12.0),(4,'Pan','kitchen',27.5),
 (5,'Lamp','home',45.0),(6,'Rug','home',120.0),(7,'Cookbook','books',30.0),(8,'Mug','kitchen',8.5);
INSERT INTO orders VALUES
 (1,1,1,2,'2024-01-03'),(2,1,3,1,'2024-01-09'),(3,2,2,1,'2024-01-10'),(4,3,5,2,'2024-01-15'),
 (5,4,6,1,'2024-02-01'),(6,2,8,6,'2024-02-02'),(7,5,7,1,'2024-02-11'),(8,6,4,2,'2024-02-14'),
 (9,1,8,4,'2024-02-20'),(10,7,3,3,'2024-03-01'),(11,8,2,1,'2024-03-04'),(12,3,1,1,'2024-03-09'),
 (13,2,6,1,'2024-03-12'),(14,4,7,2,'2024-03-18'),(15,1,5,1,'2024-03-25'),(16,6,8,2,'2024-03-30');
"""

# (id, question, gold SQL): the gold answer is whatever the gold SQL returns on the data above
QUESTIONS: list[tuple[str, str, str]] = [
    ("sql-01", "How many customers live in Lyon?", "SELECT COUNT(*) FROM customers WHERE city='Lyon'"),
    ("sql-02", "How many orders were placed in February 2024?",
     "SELECT COUNT(*) FROM orders WHERE day LIKE '2024-02-%'"),
    ("sql-03", "What is the total revenue (price times quantity) of all orders?",
     "SELECT SUM(p.price*o.quantity) FROM orders o JOIN products p ON p.id=o.product_id"),
    ("sql-04", "Which customer (name) placed the most orders?",
     "SELECT c.name FROM orders o JOIN customers c ON c.id=o.customer_id GROUP BY c.id ORDER BY COUNT(*) DESC LIMIT 1"),
    ("sql-05", "What is the total revenue of the 'books' category?",
     "SELECT SUM(p.price*o.quantity) FROM orders o JOIN products p ON p.id=o.product_id WHERE p.category='books'"),
    ("sql-06", "How many units of 'Mug' were sold in total?",
     "SELECT SUM(o.quantity) FROM orders o JOIN products p ON p.id=o.product_id WHERE p.name='Mug'"),
    ("sql-07", "Which city's customers spent the most money in total?",
     "SELECT c.city FROM orders o JOIN customers c ON c.id=o.customer_id JOIN products p ON p.id=o.product_id "
     "GROUP BY c.city ORDER BY SUM(p.price*o.quantity) DESC LIMIT 1"),
    ("sql-08", "How many distinct products has Ada bought?",
     "SELECT COUNT(DISTINCT o.product_id) FROM orders o JOIN customers c ON c.id=o.customer_id WHERE c.name='Ada'"),
    ("sql-09", "Which product (name) appears in exactly one order?",
     "SELECT p.name FROM products p JOIN orders o ON o.product_id=p.id GROUP BY p.id HAVING COUNT(*)=1 "
     "ORDER BY p.price DESC LIMIT 1"),
    ("sql-10", "How many customers joined before 2021 and placed at least one order?",
     "SELECT COUNT(DISTINCT c.id) FROM customers c JOIN orders o ON o.customer_id=c.id WHERE c.joined<2021"),
    ("sql-11", "What is the average price of products in the 'kitchen' category?",
     "SELECT AVG(price) FROM products WHERE category='kitchen'"),
    ("sql-12", "Which customers live in Paris? Give their names in alphabetical order, comma-separated.",
     "SELECT name FROM customers WHERE city='Paris' ORDER BY name"),
]

# Runs inside the sandbox: reads one SQL query on stdin, prints a header and at most 50 rows.
QUERY_RUNNER = """\
import sqlite3, sys
query = sys.stdin.read()
con = sqlite3.connect("file:shop.db?mode=ro", uri=True)
try:
    cur = con.execute(query)
except sqlite3.Error as exc:
    print(f"SQL error: {exc}", file=sys.stderr)
    sys.exit(1)
rows = cur.fetchmany(51)
print(" | ".join(d[0] for d in cur.description or []))
for row in rows[:50]:
    print(" | ".join("NULL" if v is None else str(v) for v in row))
if len(rows) > 50:
    print("... (more rows not shown)")
"""

BUILDER = "import sqlite3\ncon = sqlite3.connect('shop.db')\ncon.executescript(open('schema.sql').read())\ncon.commit()\n"


def gold_answer(sql: str) -> str:
    """The gold answer: the first column of the gold query's rows, comma-joined."""
    con = sqlite3.connect(":memory:")
    con.executescript(SCHEMA_AND_DATA)
    rows = con.execute(sql).fetchall()
    values = []
    for (value, *_) in rows:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        values.append(str(round(value, 4)) if isinstance(value, float) else str(value))
    return ", ".join(values)
