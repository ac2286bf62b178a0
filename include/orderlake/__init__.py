"""orderlake: an Airflow-managed lambda data platform for shop order streams.

Flume agents tail order logs into Kafka; a Spark Structured Streaming job keeps real-time
age/gender order counts (the speed layer); Airflow-scheduled Spark jobs load Kafka's log into
Delta bronze/silver/gold tables (the batch layer) and prove both layers agree.
"""

__version__ = "0.1.0"
