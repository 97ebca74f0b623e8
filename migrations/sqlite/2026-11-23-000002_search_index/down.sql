DROP TABLE search_reference;
DROP TABLE search_date;
DROP TABLE search_string;
