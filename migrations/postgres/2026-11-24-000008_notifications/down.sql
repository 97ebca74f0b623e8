DROP TABLE deliveries;
DROP TABLE subscriptions;
DROP TABLE notices;
